import { z } from "zod";
import { checkRequestLimits, snakeCaseFields, tightenLimits, type FieldNamer, type RequestLimits } from "../../core/limits.js";
import type { OmniDiffusionRequestInit } from "../../core/request.js";
import { ValidationError } from "../../errors/omni-error.js";
import { SCHEDULER_NAMES } from "../../schedulers/index.js";
import type { MaskImage, RgbImage } from "../../utils/png.js";
import type { ModelCard } from "../app/model-card.js";
import type { ServerLimits } from "../app/server-options.js";
import { decodeBase64Upload, openAIMask, resizeMask, resizeRgb, serverUploadCap, stepsRun } from "../shared/edit-images.js";
import { predictionError } from "./prediction-errors.js";
import { WEBHOOK_EVENTS } from "./webhook-types.js";

/**
 * `input` of a prediction: the fields of a Stable Diffusion model on Replicate that this engine serves.
 * Unknown fields are a 422 naming them. `image` and `mask` are data URLs or base64 PNG (not fetched URLs).
 */
export const predictionInputSchema = z
  .object({
    prompt: z.string().min(1),
    negative_prompt: z.string().nullish(),
    width: z.number().int().min(8).nullish(),
    height: z.number().int().min(8).nullish(),
    num_inference_steps: z.number().int().min(1).nullish(),
    guidance_scale: z.number().min(0).max(100).nullish(),
    seed: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER - 16).nullish(),
    scheduler: z.string().min(1).nullish(),
    num_outputs: z.number().int().min(1).max(10).nullish(),
    image: z.string().min(1).nullish(),
    mask: z.string().min(1).nullish(),
    strength: z.number().gt(0).max(1).nullish(),
  })
  .strict();

export type PredictionInput = z.output<typeof predictionInputSchema>;

/** Body of `POST /v1/predictions` and `POST /v1/models/{owner}/{name}/predictions`. */
export const createPredictionSchema = z
  .object({
    input: predictionInputSchema,
    /** Which model (`POST /v1/predictions` only): the served id, `owner/<id>`, or `owner/<id>:<version>`. */
    version: z.string().min(1).max(512).nullish(),
    model: z.string().min(1).max(512).nullish(),
    webhook: z.string().min(1).max(2048).nullish(),
    webhook_events_filter: z.array(z.enum(WEBHOOK_EVENTS)).nullish(),
    /** Sent by older clients to ask for a stream URL; every prediction has one. */
    stream: z.boolean().nullish(),
  })
  .strict();

export type CreatePredictionBody = z.output<typeof createPredictionSchema>;

/** Engine field → the input field a client sent. */
const inputField: FieldNamer = (f) => `input.${f === "numOutputsPerPrompt" ? "num_outputs" : snakeCaseFields(f)}`;

/** A request built from a prediction's input: what the engine runs, and the steps it will take (for previews). */
export interface PlannedRequest {
  init: OmniDiffusionRequestInit;
  steps: number | null;
  limits: Partial<RequestLimits>;
  fieldName: FieldNamer;
}

/** Bytes a base64 string (or data URL) decodes to, without decoding it. */
function base64Bytes(v: string): number {
  const comma = v.startsWith("data:") ? v.indexOf(",") : -1;
  return Math.floor(((comma >= 0 ? v.length - comma - 1 : v.length) * 3) / 4);
}

function checkImageField(v: string, field: string, maxBytes: number): void {
  if (/^https?:\/\//i.test(v)) {
    throw predictionError(422, `${field}: image URLs are not fetched by this server; send the PNG as a data URL (data:image/png;base64,...) or base64`, field);
  }
  const bytes = base64Bytes(v);
  if (bytes > maxBytes) throw predictionError(413, `${field} is ${bytes} bytes, over the limit of ${maxBytes} bytes (--max-upload-bytes)`, field, "request_too_large");
}

/**
 * Turns a prediction's input into an engine request: images decoded (PNG, off the event loop) and resized to
 * the requested size, the limits checked as the engine will check them. Throws a ValidationError naming the
 * input field (`input.width`, `input.image`): 413 for an image over `--max-upload-bytes`, else 422.
 * Run at creation (to refuse bad input at once) and again when the job starts (the store keeps the input).
 */
export async function planRequest(input: PredictionInput, limits: ServerLimits, model: ModelCard, signal?: AbortSignal, requestModel: string | null = null): Promise<PlannedRequest> {
  // Another model than the engine's default is checked by the worker that loads it (issue 24).
  const modelLimits = requestModel ? null : model.limits;
  const own = { maxWidth: limits.maxWidth, maxHeight: limits.maxHeight, maxSteps: limits.maxSteps, maxOutputsPerPrompt: limits.maxN, maxPromptChars: limits.maxPromptChars };
  if (input.mask && !input.image) throw predictionError(422, "input.mask needs input.image (the image to inpaint)", "input.mask");
  if (input.strength != null && !input.image) throw predictionError(422, "input.strength applies to an input.image only", "input.strength");
  let image: RgbImage | null = null;
  let mask: MaskImage | null = null;
  let width = input.width ?? null;
  let height = input.height ?? null;
  try {
    const cap = serverUploadCap(limits, model);
    if (input.image) {
      checkImageField(input.image, "input.image", limits.maxUploadBytes);
      const up = await decodeBase64Upload(input.image, "input.image", cap, signal);
      width ??= up.width;
      height ??= up.height;
      image = up.width === width && up.height === height ? up.rgb : resizeRgb(up.rgb, width, height);
    }
    if (input.mask) {
      checkImageField(input.mask, "input.mask", limits.maxUploadBytes);
      const up = await decodeBase64Upload(input.mask, "input.mask", cap, signal);
      mask = resizeMask(openAIMask(up), width!, height!);
    }
    const init: OmniDiffusionRequestInit = {
      prompt: input.prompt,
      negativePrompt: input.negative_prompt ?? null,
      width,
      height,
      numInferenceSteps: input.num_inference_steps ?? null,
      guidanceScale: input.guidance_scale ?? null,
      seed: input.seed ?? null,
      numOutputsPerPrompt: input.num_outputs ?? 1,
      scheduler: input.scheduler ?? null,
      ...(image ? { image, mask, strength: input.strength ?? null } : {}),
      model: requestModel,
    };
    checkRequestLimits(init as Parameters<typeof checkRequestLimits>[0], tightenLimits(model.requestLimits, own), modelLimits, { fieldName: inputField, knownSchedulers: SCHEDULER_NAMES });
    const steps = input.num_inference_steps ?? model.info?.defaults.numInferenceSteps ?? null;
    return { init, steps: stepsRun(steps, { image, mask, strength: input.strength ?? null }), limits: own, fieldName: inputField };
  } catch (err) {
    // A value the model or the limits refuse is, in Replicate's terms, input that failed validation.
    if (err instanceof ValidationError && err.statusCode === 400) throw predictionError(422, err.message, err.field ?? "input", String(err.data.reason ?? "invalid_value"));
    throw err;
  }
}

/** The served model id a prediction's `version`/`model` (or route's `{owner}/{name}`) names, among `ids`; null: none. */
export function servedIdOf(ref: string, ids: readonly string[]): string | null {
  return ids.find((id) => namesModel(ref, id)) ?? null;
}

/** The `{owner}/{name}` ids (with an optional `:version`) that name the served model `id`. */
export function namesModel(ref: string, id: string): boolean {
  const bare = ref.split(":")[0]!;
  return bare === id || bare.endsWith(`/${id}`) || (id.includes("/") && bare === id);
}
