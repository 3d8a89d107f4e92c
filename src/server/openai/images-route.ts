import type { FastifyPluginAsync } from "fastify";
import { OmniDiffusionRequest } from "../../core/request.js";
import { answerImages } from "../app/generation-flow.js";
import { imageGenerationBodySchema, toImageRequest, type ImageGenerationBody } from "./image-request.js";
import type { ServerContext } from "../app/server-context.js";

/**
 * `POST /v1/images/generations`: validates (422 schema, 400 limits/model), runs the request on the engine,
 * and answers with `{created, data: [{b64_json | url, revised_prompt: null}]}`, or with Server-Sent Events
 * (`image_generation.partial_image`, `image_generation.completed`, `error`) when `stream` is true.
 * A client that disconnects aborts its request, which the engine stops between denoising steps.
 */
export const imageRoutes: FastifyPluginAsync<{ ctx: ServerContext }> = async (app, { ctx }) => {
  app.post("/v1/images/generations", { schema: { body: imageGenerationBodySchema } }, async (req, reply) => {
    const parsed = toImageRequest(req.body as ImageGenerationBody, ctx.config.limits, ctx.model);
    const refusal = ctx.refusal();
    if (refusal) throw refusal;
    const request = new OmniDiffusionRequest({ ...parsed.init, requestId: req.id });
    const { width, height, numInferenceSteps, seed } = request;
    req.log.info({ requestId: req.id, n: parsed.n, width, height, steps: numInferenceSteps, seed, stream: parsed.stream, user: parsed.user }, "generation accepted");
    return answerImages(req, reply, ctx, request, parsed, "image_generation");
  });
};
