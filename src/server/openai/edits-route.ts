import multipart from "@fastify/multipart";
import type { FastifyPluginAsync } from "fastify";
import { OmniDiffusionRequest } from "../../core/request.js";
import { parseEditRequest } from "./edit-request.js";
import { answerImages } from "../app/generation-flow.js";
import type { ServerContext } from "../app/server-context.js";

/**
 * `POST /v1/images/edits` (multipart/form-data, as the OpenAI API and its clients send it): img2img on
 * `image`, or inpainting where `mask` is transparent; answered like generations (`{created, data}`, or SSE
 * `image_edit.partial_image` / `image_edit.completed` events when `stream` is true). The multipart parser
 * lives in this plugin only, so every other route stays JSON-only.
 */
export const editRoutes: FastifyPluginAsync<{ ctx: ServerContext }> = async (app, { ctx }) => {
  const { maxUploadBytes, maxPromptChars } = ctx.config.limits;
  await app.register(multipart, {
    // Bounded: two files (image, mask), a few dozen short fields; oversized files fail while streaming.
    limits: { fileSize: maxUploadBytes, files: 4, fields: 40, parts: 44, fieldSize: Math.max(65_536, maxPromptChars * 4), headerPairs: 200 },
    throwFileSizeLimit: true,
  });
  app.post("/v1/images/edits", async (req, reply) => {
    const parsed = await parseEditRequest(req, ctx.config.limits, ctx.model);
    const refusal = ctx.refusal();
    if (refusal) throw refusal;
    const request = new OmniDiffusionRequest({ ...parsed.init, requestId: req.id });
    const { width, height, numInferenceSteps, seed, mask, strength } = request;
    req.log.info({ requestId: req.id, n: parsed.n, width, height, steps: numInferenceSteps, seed, inpaint: mask !== null, strength, stream: parsed.stream, user: parsed.user }, "edit accepted");
    return answerImages(req, reply, ctx, request, parsed, "image_edit");
  });
};
