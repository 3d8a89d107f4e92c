import { randomUUID } from "node:crypto";
import { z } from "zod";
import { ValidationError } from "../errors/omni-error.js";
import { decodeMaskPng, decodePng, encodeMaskPng, encodePng, type MaskImage, type PngDecodeOptions, type RgbImage } from "../utils/png.js";
import { zodToValidationError } from "../utils/zod-error.js";
import { VAE_CHOICES, type VaeChoice } from "./decoders.js";

/** Wire shape of a request (snake_case, readable from Python). */
export const requestDictSchema = z
  .object({
    // "__proto__" as a key of a plain object sets its prototype instead of an entry: outputs and errors are keyed by id.
    request_id: z.string().min(1).max(256).refine((id) => id !== "__proto__", { message: 'must not be "__proto__"' }).optional(),
    prompt: z
      .string()
      .max(10_000)
      .refine((p) => p.trim() !== "", "must not be empty"),
    negative_prompt: z.string().max(10_000).nullish(),
    height: z.number().int().positive().nullish(),
    width: z.number().int().positive().nullish(),
    num_inference_steps: z.number().int().min(1).nullish(),
    guidance_scale: z.number().min(0).max(100).nullish(),
    guidance_rescale: z.number().min(0).max(1).nullish(),
    seed: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).nullish(),
    num_outputs_per_prompt: z.number().int().min(1).nullish(),
    scheduler: z.string().min(1).nullish(),
    return_trajectory_latents: z.boolean().nullish(),
    return_trajectory_timesteps: z.boolean().nullish(),
    /** Init image for img2img / inpainting: base64 PNG (decoded to RGB; alpha is dropped). */
    image: z.string().min(1).nullish(),
    /** Inpainting mask: base64 PNG, white = repaint, black = keep (same size as `image`). */
    mask_image: z.string().min(1).nullish(),
    /** How much of the init image is re-noised, (0, 1]: `floor(steps × strength)` steps run (diffusers' semantics). */
    strength: z.number().gt(0).max(1).nullish(),
    /** Which VAE decodes the final image: `full` (the model's own; default) or `tiny` (its tiny VAE, for speed). */
    vae: z.enum(VAE_CHOICES).nullish(),
  })
  .strict();

export type OmniDiffusionRequestDict = z.input<typeof requestDictSchema>;

/** Constructor fields of {@link OmniDiffusionRequest} (camelCase). Unset fields take the model's defaults. */
export interface OmniDiffusionRequestInit {
  prompt: string;
  requestId?: string;
  negativePrompt?: string | null;
  height?: number | null;
  width?: number | null;
  numInferenceSteps?: number | null;
  guidanceScale?: number | null;
  guidanceRescale?: number | null;
  seed?: number | null;
  numOutputsPerPrompt?: number | null;
  scheduler?: string | null;
  returnTrajectoryLatents?: boolean;
  returnTrajectoryTimesteps?: boolean;
  /** Init image (img2img, inpainting). */
  image?: RgbImage | null;
  /** Inpainting mask, 255 = repaint (needs `image`, same size). */
  mask?: MaskImage | null;
  /** (0, 1]; only with `image`. Null: 1.0 with a mask, else the model's img2img default. */
  strength?: number | null;
  /** `full` (default) or `tiny`: decode (and encode an init image) with the model's tiny VAE, faster and coarser (docs/models.md). */
  vae?: VaeChoice | null;
}

/**
 * The in-machine form of a request (parent → its own worker process, over the IPC channel): the
 * validated fields as they are, `image` and `mask` as raw bytes (packed by protocol/worker-ipc.ts `packBinary`). Built only from a
 * request that was validated when it was constructed, so the receiver does not validate it again.
 */
export type OmniDiffusionRequestTransfer = {
  readonly [K in keyof OmniDiffusionRequest as OmniDiffusionRequest[K] extends (...args: never[]) => unknown ? never : K]: OmniDiffusionRequest[K];
};

let counter = 0;
/** Unique across processes and concurrent callers: a random UUID plus a per-process counter. */
export function newRequestId(): string {
  counter = (counter + 1) % Number.MAX_SAFE_INTEGER;
  return `req-${randomUUID()}-${counter}`;
}

const camelToSnake = (s: string) => s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/**
 * One image-generation request, as in vLLM-Omni. `toDict()`/`fromDict()` give the snake_case JSON that
 * the HTTP/gRPC wire and Python peers use; `fromDict` validates and throws a field-level ValidationError.
 */
export class OmniDiffusionRequest {
  readonly requestId: string;
  prompt: string;
  negativePrompt: string | null;
  height: number | null;
  width: number | null;
  numInferenceSteps: number | null;
  guidanceScale: number | null;
  guidanceRescale: number | null;
  seed: number | null;
  numOutputsPerPrompt: number;
  scheduler: string | null;
  returnTrajectoryLatents: boolean;
  returnTrajectoryTimesteps: boolean;
  image: RgbImage | null;
  mask: MaskImage | null;
  strength: number | null;
  vae: VaeChoice | null;

  constructor(init: OmniDiffusionRequestInit) {
    const { image, mask, ...plain } = (init ?? {}) as OmniDiffusionRequestInit;
    const parsed = requestDictSchema.safeParse(OmniDiffusionRequest.#initToDict(plain as OmniDiffusionRequestInit));
    if (!parsed.success) throw zodToValidationError(parsed.error, "OmniDiffusionRequest", snakeToCamel);
    const d = parsed.data;
    this.requestId = d.request_id ?? newRequestId();
    this.prompt = d.prompt;
    this.negativePrompt = d.negative_prompt ?? null;
    this.height = d.height ?? null;
    this.width = d.width ?? null;
    this.numInferenceSteps = d.num_inference_steps ?? null;
    this.guidanceScale = d.guidance_scale ?? null;
    this.guidanceRescale = d.guidance_rescale ?? null;
    this.seed = d.seed ?? null;
    this.numOutputsPerPrompt = d.num_outputs_per_prompt ?? 1;
    this.scheduler = d.scheduler ?? null;
    this.returnTrajectoryLatents = d.return_trajectory_latents ?? false;
    this.returnTrajectoryTimesteps = d.return_trajectory_timesteps ?? false;
    this.image = image ?? null;
    this.mask = mask ?? null;
    this.strength = d.strength ?? null;
    this.vae = d.vae ?? null;
    checkEditFields(this);
  }

  static #initToDict(init: OmniDiffusionRequestInit): Record<string, unknown> {
    if (init === null || typeof init !== "object") return { prompt: undefined };
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(init)) if (v !== undefined) out[camelToSnake(k)] = v;
    return out;
  }

  /** Plain JSON, snake_case keys. Always carries `request_id`. */
  toDict(): Required<{ [K in keyof OmniDiffusionRequestDict]: Exclude<OmniDiffusionRequestDict[K], undefined> }> {
    return {
      request_id: this.requestId,
      prompt: this.prompt,
      negative_prompt: this.negativePrompt,
      height: this.height,
      width: this.width,
      num_inference_steps: this.numInferenceSteps,
      guidance_scale: this.guidanceScale,
      guidance_rescale: this.guidanceRescale,
      seed: this.seed,
      num_outputs_per_prompt: this.numOutputsPerPrompt,
      scheduler: this.scheduler,
      return_trajectory_latents: this.returnTrajectoryLatents,
      return_trajectory_timesteps: this.returnTrajectoryTimesteps,
      image: this.image ? encodePng(this.image).toString("base64") : null,
      mask_image: this.mask ? encodeMaskPng(this.mask).toString("base64") : null,
      strength: this.strength,
      vae: this.vae,
    };
  }

  /** The {@link OmniDiffusionRequestTransfer} form: plain fields, images raw (no PNG, no base64). */
  toTransfer(): OmniDiffusionRequestTransfer {
    return { ...this };
  }

  /**
   * Rebuilds a request from {@link OmniDiffusionRequestTransfer}, trusting it: the sender validated it
   * once, at construction, and only our own parent process sends this form. Only its identity is checked.
   */
  static fromTransfer(t: OmniDiffusionRequestTransfer): OmniDiffusionRequest {
    if (typeof t?.requestId !== "string" || typeof t.prompt !== "string") {
      throw new ValidationError("request transfer: requestId and prompt must be strings", { field: "request_id" });
    }
    return Object.assign(Object.create(OmniDiffusionRequest.prototype) as OmniDiffusionRequest, t);
  }

  /**
   * Validates a snake_case dict (from JSON, a Python peer, a worker) and builds the request. `opts.images`
   * bounds the decode of `image` and `mask_image` (a server passes its upload cap; by default at most 4096²
   * pixels, and never more than a PNG's header implies).
   */
  static fromDict(dict: unknown, opts: { images?: Omit<PngDecodeOptions, "field"> } = {}): OmniDiffusionRequest {
    const parsed = requestDictSchema.safeParse(dict);
    if (!parsed.success) throw zodToValidationError(parsed.error, "request");
    const d = parsed.data;
    return new OmniDiffusionRequest({
      prompt: d.prompt,
      requestId: d.request_id,
      negativePrompt: d.negative_prompt,
      height: d.height,
      width: d.width,
      numInferenceSteps: d.num_inference_steps,
      guidanceScale: d.guidance_scale,
      guidanceRescale: d.guidance_rescale,
      seed: d.seed,
      numOutputsPerPrompt: d.num_outputs_per_prompt,
      scheduler: d.scheduler,
      returnTrajectoryLatents: d.return_trajectory_latents ?? undefined,
      returnTrajectoryTimesteps: d.return_trajectory_timesteps ?? undefined,
      image: d.image ? decodeField(d.image, "image", (b) => decodePng(b, { ...opts.images, field: "image" })) : null,
      mask: d.mask_image ? decodeField(d.mask_image, "mask_image", (b) => decodeMaskPng(b, { ...opts.images, field: "mask_image" })) : null,
      strength: d.strength,
      vae: d.vae,
    });
  }
}

function decodeField<T>(b64: string, field: string, decode: (bytes: Uint8Array) => T): T {
  try {
    return decode(Buffer.from(b64, "base64"));
  } catch (err) {
    // The decoder's errors name the field and keep their class (a pixel cap is a LimitExceededError).
    if (err instanceof ValidationError) throw err;
    throw new ValidationError(`${field}: ${(err as Error).message} (expected a base64 PNG)`, { field, cause: err });
  }
}

/** The edit fields agree with each other: a mask or a strength needs an image, a mask matches its size. */
function checkEditFields(r: OmniDiffusionRequest): void {
  const { image, mask } = r;
  for (const [field, img, channels] of [["image", image, 3], ["mask_image", mask, 1]] as const) {
    if (img && (!Number.isInteger(img.width) || !Number.isInteger(img.height) || img.width < 1 || img.height < 1 || img.data.length !== img.width * img.height * channels)) {
      throw new ValidationError(`${field}: ${img.width}x${img.height} needs ${channels} byte(s) per pixel, got ${img.data.length} bytes`, { field });
    }
  }
  if (mask && !image) throw new ValidationError("mask_image needs an image to repaint", { field: "mask_image" });
  if (r.strength !== null && !image) throw new ValidationError("strength applies only with an image (img2img or inpainting)", { field: "strength" });
  if (mask && image && (mask.width !== image.width || mask.height !== image.height)) {
    throw new ValidationError(`mask_image is ${mask.width}x${mask.height} but image is ${image.width}x${image.height}; they must be the same size`, { field: "mask_image" });
  }
}

function snakeToCamel(path: string): string {
  return path.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}
