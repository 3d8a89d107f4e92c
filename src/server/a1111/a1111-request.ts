import type { LoraRef } from "../../core/weights.js";
import { extractLoraTags } from "../../pipelines/lora/prompt-lora-tags.js";
import { resizeRgbAsync } from "../../utils/png-decode-pool.js";
import { z, type ZodError } from "zod";
import { checkRequestLimits, tightenLimits, type FieldNamer, type LimitField } from "../../core/limits.js";
import type { OmniDiffusionRequestInit } from "../../core/request.js";
import { ValidationError } from "../../errors/omni-error.js";
import { MAX_SEED, randomSeed } from "../../pipelines/random.js";
import { SCHEDULER_NAMES } from "../../schedulers/index.js";
import type { MaskImage, RgbImage } from "../../utils/png.js";
import { a1111Mask, decodeBase64Upload, resizeMask, uploadCapOf, type UploadCap } from "../shared/edit-images.js";
import type { ModelCard } from "../app/model-card.js";
import type { ServerLimits } from "../app/server-options.js";
import { A1111_SCHEDULES, LISTED_SAMPLERS, a1111SamplerName, chooseSampler, samplerForModel } from "./a1111-samplers.js";

/** Most `n_iter` iterations of one call (A1111 has no limit; each is one engine request). */
export const MAX_N_ITER = 100;

// pydantic (v1, which A1111 uses) coerces numeric strings and 0/1/"true"/"false": clients rely on it
// (a SillyTavern extension sends `seed: "-1"`), so the same values are accepted here.
const numeric = (v: unknown) => (typeof v === "string" && /^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$/.test(v) ? Number(v) : v);
const num = () => z.preprocess(numeric, z.number()).nullish();
const int = () => z.preprocess(numeric, z.number().int()).nullish();
const bool = () => z.preprocess((v) => (v === "true" || v === 1 ? true : v === "false" || v === 0 ? false : v), z.boolean()).nullish();

/**
 * The fields of A1111's `StableDiffusionTxt2ImgProcessingAPI` / `...Img2Img...` that change what this server
 * does. Every other field (hires fix, restore_faces, scripts, `override_settings` other than those read, ...)
 * is accepted and ignored, as pydantic ignores extra fields, so real client payloads never fail. A known field
 * of the wrong type is a 422 in FastAPI's shape.
 */
export const a1111BodySchema = z.looseObject({
  prompt: z.string().nullish(),
  negative_prompt: z.string().nullish(),
  seed: int(),
  sampler_name: z.string().nullish(),
  sampler_index: z.string().nullish(),
  scheduler: z.string().nullish(),
  batch_size: z.preprocess(numeric, z.number().int().min(1)).nullish(),
  n_iter: z.preprocess(numeric, z.number().int().min(1).max(MAX_N_ITER)).nullish(),
  steps: z.preprocess(numeric, z.number().int().min(1)).nullish(),
  cfg_scale: z.preprocess(numeric, z.number().min(0).max(100)).nullish(),
  width: z.preprocess(numeric, z.number().int().min(1)).nullish(),
  height: z.preprocess(numeric, z.number().int().min(1)).nullish(),
  denoising_strength: num(),
  send_images: bool(),
  init_images: z.array(z.string()).nullish(),
  mask: z.string().nullish(),
  inpainting_mask_invert: z.preprocess((v) => (v === true ? 1 : v === false ? 0 : numeric(v)), z.number().int().min(0).max(1)).nullish(),
  resize_mode: int(),
  include_init_images: bool(),
  /** Per-call settings; this server reads `sd_model_checkpoint` (the model of this call) and ignores the others. */
  override_settings: z.looseObject({ sd_model_checkpoint: z.string().max(256).nullish() }).nullish(),
  /** A1111 1.8+: the task id the client will ask `progress` (`id_task`) and `interrupt` about. */
  force_task_id: z.string().max(256).nullish(),
});

/** A body that passed {@link a1111BodySchema}. */
export type A1111Body = z.output<typeof a1111BodySchema>;

/** The declared body schema of `txt2img` and `img2img`: A1111 reads a call without a body as `{}`. */
export const a1111CallSchema = z.preprocess((v) => v ?? {}, a1111BodySchema);

/** One entry of FastAPI's 422 `detail` list. */
export interface A1111Detail {
  loc: (string | number)[];
  msg: string;
  type: string;
}

/** A 422 with FastAPI's `{detail: [{loc, msg, type}]}`, for A1111 clients; `field` names the first bad field. */
export function a1111Unprocessable(details: A1111Detail[]): ValidationError {
  const first = details[0];
  const field = first ? String(first.loc[first.loc.length - 1]) : undefined;
  return new ValidationError(details.map((d) => `${d.loc.slice(1).join(".")}: ${d.msg}`).join("; "), { statusCode: 422, field, data: { a1111Detail: details } });
}

/** zod's issues as FastAPI's 422 details (`loc` starts with "body", as FastAPI's do). */
export function a1111SchemaError(err: ZodError): ValidationError {
  return a1111Unprocessable(
    err.issues.map((i) => ({
      loc: ["body", ...i.path.map((p) => (typeof p === "number" ? p : String(p)))],
      msg: i.message,
      type: i.code === "invalid_type" ? `type_error.${i.expected}` : `value_error.${i.code}`,
    })),
  );
}

/** A 400 in A1111's error shape, naming the field. */
function a1111BadRequest(field: string, message: string): ValidationError {
  return new ValidationError(`${field}: ${message}`, { field, data: { reason: "invalid_value" } });
}

/** Engine field → the A1111 field a client sent. */
const a1111Field: FieldNamer = (f: LimitField) =>
  ({ prompt: "prompt", negativePrompt: "negative_prompt", width: "width", height: "height", numInferenceSteps: "steps", numOutputsPerPrompt: "batch_size", scheduler: "sampler_name" })[f];

/** What a call runs: one engine request per iteration, and what `info` reports. */
export interface A1111Plan {
  kind: "txt2img" | "img2img";
  /** One per `n_iter`, with seeds `seed + i × batch_size`. */
  requests: OmniDiffusionRequestInit[];
  seed: number;
  batchSize: number;
  steps: number | null;
  cfgScale: number | null;
  width: number | null;
  height: number | null;
  samplerName: string | null;
  /** The size asked for, when the model could not serve it and its native size ran instead. */
  sizeFallbackFrom: { width: number; height: number } | null;
  denoisingStrength: number | null;
  sendImages: boolean;
}

/** Decodes `init_images[0]` and `mask` of an img2img body, resized to `width`×`height` (A1111's "just resize"). */
async function editImages(body: A1111Body, width: number, height: number, cap: UploadCap): Promise<{ image: RgbImage; mask: MaskImage | null }> {
  const first = body.init_images?.[0];
  if (!first) throw a1111Unprocessable([{ loc: ["body", "init_images"], msg: "img2img needs at least one init image (base64 PNG)", type: "value_error.missing" }]);
  // Resized on the decode thread: only width×height pixels reach the event loop's heap.
  const image = (await decodeBase64Upload(first, "init_images", cap, undefined, { width, height })).rgb;
  const mask = body.mask ? a1111Mask(await decodeBase64Upload(body.mask, "mask", cap), body.inpainting_mask_invert === 1) : null;
  return { image: await resizeRgbAsync(image, width, height), mask: mask ? resizeMask(mask, width, height) : null };
}

/**
 * Turns an A1111 body into engine requests. Fields left out take the MODEL's defaults (steps, CFG scale,
 * sampler, size), not A1111's (50 steps, CFG 7, Euler, 512²), because those are what the model was made
 * for. A size the model cannot serve runs at the model's native size instead (A1111 clients hard-code sizes,
 * LibreChat 1024²), reported in `info`; other limits are a 400 naming the field.
 */
export async function planA1111(kind: "txt2img" | "img2img", body: A1111Body, limits: ServerLimits, model: ModelCard): Promise<A1111Plan> {
  // `override_settings.sd_model_checkpoint` picks this call's model (issue 24); absent: the current default.
  const requestModel = model.models.requestModel(body.override_settings?.sd_model_checkpoint ?? null);
  // What the server knows of a model is its default's (the engine describes that one); another model's own
  // rules are checked by the worker that loads it.
  const mLimits = requestModel ? null : model.limits;
  const mInfo = requestModel ? null : model.info;
  const prompt = body.prompt ?? "";
  if (prompt.trim() === "") throw a1111Unprocessable([{ loc: ["body", "prompt"], msg: "must not be empty (this server needs a prompt)", type: "value_error" }]);
  // `<lora:name:weight>` tags leave the text that is encoded and become the requests' LoRAs.
  const tagged = extractLoraTags(prompt);
  const choice = chooseSampler(body.sampler_name ?? body.sampler_index, body.scheduler);
  if (choice.unknown) {
    const names = LISTED_SAMPLERS.map((s) => s.name).join(", ");
    throw a1111BadRequest("sampler_name", `Sampler not found: '${body.sampler_name ?? body.sampler_index}'; use one of ${names} (schedules: ${A1111_SCHEDULES.map((s) => s.label).join(", ")})`);
  }
  // A sampler this model does not offer runs as its closest offered one (PLMS → DDIM on tiny-shapes), else as the
  // model's own (an epsilon sampler on a flow model).
  const scheduler = samplerForModel(choice.scheduler, mLimits);
  const batchSize = body.batch_size ?? 1;
  const iterations = body.n_iter ?? 1;
  const seed = body.seed == null || body.seed < 0 ? randomSeed() % (MAX_SEED - batchSize * iterations) : body.seed;
  let strength: number | null = null;
  if (kind === "img2img") {
    strength = body.denoising_strength ?? 0.75; // A1111's img2img default
    if (!(strength > 0 && strength <= 1)) {
      throw a1111Unprocessable([{ loc: ["body", "denoising_strength"], msg: "must be in (0, 1] for img2img", type: "value_error.number" }]);
    }
  }
  const own = { maxWidth: limits.maxWidth, maxHeight: limits.maxHeight, maxSteps: limits.maxSteps, maxOutputsPerPrompt: limits.maxN, maxPromptChars: limits.maxPromptChars };
  const requestLimits = tightenLimits(model.requestLimits, own);
  const base = {
    prompt: tagged.prompt,
    negativePrompt: body.negative_prompt ? body.negative_prompt : null,
    width: body.width ?? null,
    height: body.height ?? null,
    numInferenceSteps: body.steps ?? null,
    guidanceScale: body.cfg_scale ?? null,
    numOutputsPerPrompt: batchSize,
    scheduler,
  };
  // Checked here, ahead of the engine's submission, because the plan depends on it: a size the model cannot
  // serve falls back to the native one, and a job of n_iter requests is refused before any of them is queued.
  const check = () => checkRequestLimits(base, requestLimits, mLimits, { fieldName: a1111Field, knownSchedulers: SCHEDULER_NAMES });
  let sizeFallbackFrom: A1111Plan["sizeFallbackFrom"] = null;
  try {
    check();
  } catch (err) {
    const field = err instanceof ValidationError ? err.field : undefined;
    const native = mLimits ? { width: mLimits.nativeWidth, height: mLimits.nativeHeight } : null;
    if (!native || (field !== "width" && field !== "height")) throw err;
    sizeFallbackFrom = { width: base.width ?? native.width, height: base.height ?? native.height };
    base.width = native.width;
    base.height = native.height;
    check();
  }
  const width = base.width ?? mLimits?.nativeWidth ?? mInfo?.width ?? null;
  const height = base.height ?? mLimits?.nativeHeight ?? mInfo?.height ?? null;
  let edit: { image: RgbImage; mask: MaskImage | null } | null = null;
  if (kind === "img2img") {
    if (width === null || height === null) {
      throw a1111Unprocessable([{ loc: ["body", "width"], msg: "set width and height: the executor does not report the model's size", type: "value_error.missing" }]);
    }
    // Decoded off the event loop, held to the upload cap of the limits just checked.
    edit = await editImages(body, width, height, uploadCapOf(requestLimits, mLimits));
  }
  const requests = Array.from({ length: iterations }, (_, i) => ({
    ...base,
    width,
    height,
    seed: seed + i * batchSize,
    model: requestModel,
    // `<lora:name:w>` tags of the prompt (removed from its text above).
    ...(tagged.loras.length ? { loras: tagged.loras } : {}),
    ...(edit ? { image: edit.image, mask: edit.mask, strength } : {}),
  }));
  const defaults = mInfo?.defaults;
  return {
    kind,
    requests,
    seed,
    batchSize,
    steps: base.numInferenceSteps ?? defaults?.numInferenceSteps ?? null,
    cfgScale: base.guidanceScale ?? defaults?.guidanceScale ?? null,
    width,
    height,
    samplerName: scheduler ? a1111SamplerName(scheduler) : defaults ? a1111SamplerName(defaults.scheduler) : null,
    sizeFallbackFrom,
    denoisingStrength: kind === "img2img" ? strength : (body.denoising_strength ?? null),
    sendImages: body.send_images ?? true,
  };
}

