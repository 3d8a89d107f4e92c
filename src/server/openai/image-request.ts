import { sdxlBodyFields, sdxlInit } from "../shared/sdxl-fields.js";
import { z } from "zod";
import type { OmniDiffusionRequestInit } from "../../core/request.js";
import { checkRequestLimits, snakeCaseFields, tightenLimits, type FieldNamer } from "../../core/limits.js";
import { ValidationError } from "../../errors/omni-error.js";
import { SCHEDULER_NAMES } from "../../schedulers/index.js";
import type { ModelCard } from "../app/model-card.js";
import { loraRefsSchema } from "../../core/weights-schema.js";
import { requestError } from "../app/error-mapping.js";
import { VAE_CHOICES } from "../../core/decoders.js";
import type { ServerLimits } from "../app/server-options.js";
import type { EngineGenerateOptions } from "../../engine/engine-events.js";

/**
 * Body of `POST /v1/images/generations`: the OpenAI fields, vLLM-Omni's extensions (`negative_prompt`,
 * `num_inference_steps`, `guidance_scale`, `seed`) and `scheduler`. Unknown fields are rejected, as the
 * OpenAI API does. OpenAI fields that do not apply to a diffusion model (`quality`, `style`, `moderation`,
 * `output_compression`) are accepted and ignored.
 */
export const imageGenerationBodySchema = z
  .object({
    prompt: z.string().min(1),
    model: z.string().nullish(),
    n: z.number().int().min(1).max(10).nullish(),
    size: z.string().nullish(),
    response_format: z.enum(["b64_json", "url"]).nullish(),
    user: z.string().max(256).nullish(),
    stream: z.boolean().nullish(),
    partial_images: z.number().int().min(0).max(3).nullish(),
    quality: z.enum(["standard", "hd", "low", "medium", "high", "auto"]).nullish(),
    style: z.enum(["vivid", "natural"]).nullish(),
    background: z.enum(["transparent", "opaque", "auto"]).nullish(),
    output_format: z.enum(["png", "jpeg", "webp"]).nullish(),
    output_compression: z.number().int().min(0).max(100).nullish(),
    moderation: z.enum(["low", "auto"]).nullish(),
    negative_prompt: z.string().nullish(),
    num_inference_steps: z.number().int().min(1).nullish(),
    guidance_scale: z.number().min(0).max(100).nullish(),
    guidance_rescale: z.number().min(0).max(1).nullish(),
    seed: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER - 16).nullish(),
    scheduler: z.string().min(1).nullish(),
    /** Our extension: `tiny` decodes with the model's tiny VAE (faster, coarser); `full` (default) with its own. */
    vae: z.enum(VAE_CHOICES).nullish(),
    ...sdxlBodyFields,
    /** Our extension (issue 24): LoRAs fused into the model for this request, `[{ name, scale }]`. */
    loras: loraRefsSchema.nullish(),
  })
  .strict();

/** A body that passed {@link imageGenerationBodySchema}. */
export type ImageGenerationBody = z.output<typeof imageGenerationBodySchema>;

/** A validated image request: what goes to the engine, and how to answer. */
export interface ParsedImageRequest {
  init: OmniDiffusionRequestInit;
  n: number;
  stream: boolean;
  partialImages: number;
  responseFormat: "b64_json" | "url";
  /** Echoed in stream events (`quality` of the OpenAI API). */
  quality: "low" | "medium" | "high" | "auto";
  /** Steps the request will run (its own, or the model's default when known). */
  steps: number | null;
  user: string | null;
  /** What the engine's submission checks the request with (its one limits check): OpenAI's names, this server's own limits. */
  submit: Required<Pick<EngineGenerateOptions, "fieldName" | "limits">>;
}

/** Engine field → the OpenAI parameter a client sent (`size` for width and height, `n` for images). */
const openAIParam: FieldNamer = (f) => (f === "width" || f === "height" ? "size" : f === "numOutputsPerPrompt" ? "n" : snakeCaseFields(f));

/**
 * Reads a schema-valid body into the engine request. Throws a 400 ValidationError naming the parameter for
 * what only this API can say (`code` `model_not_found`, `invalid_size`, `unsupported_value`, ...); the limits
 * and the model's rules are checked once, when the engine takes the request (`submit` carries this
 * server's limits and OpenAI's names), and answered as the same 400 naming the parameter.
 */
export function toImageRequest(body: ImageGenerationBody, limits: ServerLimits, model: ModelCard): ParsedImageRequest {
  const bad = (param: string, code: string, message: string) => requestError(400, message, param, code);
  let requestModel: string | null;
  try {
    requestModel = model.models.requestModel(body.model);
  } catch (err) {
    // OpenAI answers an unknown model with a 404 `model_not_found`; the message lists what this server has.
    throw requestError(404, (err as Error).message, "model", "model_not_found");
  }
  const n = body.n ?? 1;
  let width: number | null = null;
  let height: number | null = null;
  if (body.size != null && body.size !== "auto") {
    const m = /^(\d{1,5})x(\d{1,5})$/.exec(body.size);
    if (!m) throw bad("size", "invalid_size", `Invalid size '${body.size}': expected 'WIDTHxHEIGHT' such as '32x32', or 'auto'.`);
    width = Number(m[1]);
    height = Number(m[2]);
    if (width < 8 || height < 8) throw bad("size", "invalid_size", `Invalid size '${body.size}': width and height must be at least 8.`);
  }
  const steps = body.num_inference_steps ?? null;
  if (body.output_format != null && body.output_format !== "png") {
    throw bad("output_format", "unsupported_value", `output_format '${body.output_format}' is not supported; this server returns PNG images.`);
  }
  if (body.background === "transparent") {
    throw bad("background", "unsupported_value", "background 'transparent' is not supported; diffusion outputs are opaque RGB.");
  }
  const stream = body.stream ?? false;
  const responseFormat = body.response_format ?? "b64_json";
  if (stream && responseFormat === "url") {
    throw bad("response_format", "unsupported_value", "response_format 'url' cannot be streamed; streamed images are always b64_json.");
  }
  const q = body.quality;
  const init = {
    prompt: body.prompt,
    negativePrompt: body.negative_prompt ?? null,
    width,
    height,
    numInferenceSteps: steps,
    guidanceScale: body.guidance_scale ?? null,
    guidanceRescale: body.guidance_rescale ?? null,
    seed: body.seed ?? null,
    numOutputsPerPrompt: n,
    scheduler: body.scheduler ?? null,
    vae: body.vae ?? null,
    ...sdxlInit(body),
    model: requestModel,
    loras: body.loras ?? null,
  };
  const own = { maxWidth: limits.maxWidth, maxHeight: limits.maxHeight, maxSteps: limits.maxSteps, maxOutputsPerPrompt: limits.maxN, maxPromptChars: limits.maxPromptChars };
  return {
    init,
    n,
    stream,
    partialImages: stream ? (body.partial_images ?? 0) : 0,
    responseFormat,
    quality: q === "low" || q === "medium" || q === "high" ? q : "auto",
    steps: steps ?? model.info?.defaults.numInferenceSteps ?? null,
    user: body.user ?? null,
    submit: { fieldName: openAIParam, limits: own },
  };
}

/**
 * The limits check ahead of the engine's, for an edit only: its image is resized to the requested size
 * before the engine sees it, and a resize allocates that size, so a size beyond the limits is refused first.
 */
export function checkEditLimits(parsed: ParsedImageRequest, model: ModelCard): void {
  try {
    checkRequestLimits(parsed.init, tightenLimits(model.requestLimits, parsed.submit.limits), parsed.init.model ? null : model.limits, { fieldName: parsed.submit.fieldName, knownSchedulers: SCHEDULER_NAMES });
  } catch (err) {
    if (!(err instanceof ValidationError)) throw err;
    throw requestError(400, `${err.message}.`, err.field ?? null, typeof err.data.reason === "string" ? err.data.reason : "invalid_value");
  }
}

