import { randomUUID } from "node:crypto";
import { z } from "zod";
import { ValidationError } from "../errors/omni-error.js";
import { decodeMaskPng, decodePng, encodeMaskPng, pngOf, type MaskImage, type PngDecodeOptions, type RgbImage } from "../utils/png.js";
import { zodToValidationError } from "../utils/zod-error.js";
import { VAE_CHOICES, type VaeChoice } from "./decoders.js";
import { loraRefsSchema, modelNameSchema } from "./weights-schema.js";
import type { LoraRef } from "./weights.js";

/**
 * The one schema of a request, written on its camelCase init ({@link OmniDiffusionRequestInit}). Every form
 * (constructor, wire dict, proto message) is renamed to these fields and parsed here once; images are
 * decoded by their codec, and their shape is checked with the edit fields after the parse.
 */
/** SDXL's `(height, width)` conditioning pairs. */
const sizePair = z.tuple([z.number().int().min(1).max(65_536), z.number().int().min(1).max(65_536)]);

export const requestInitSchema = z
  .object({
    // "__proto__" as a key of a plain object sets its prototype instead of an entry: outputs and errors are keyed by id.
    requestId: z.string().min(1).max(256).refine((id) => id !== "__proto__", { message: 'must not be "__proto__"' }).optional(),
    prompt: z
      .string()
      .max(10_000)
      .refine((p) => p.trim() !== "", "must not be empty"),
    negativePrompt: z.string().max(10_000).nullish(),
    height: z.number().int().positive().nullish(),
    width: z.number().int().positive().nullish(),
    numInferenceSteps: z.number().int().min(1).nullish(),
    guidanceScale: z.number().min(0).max(100).nullish(),
    guidanceRescale: z.number().min(0).max(1).nullish(),
    seed: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).nullish(),
    numOutputsPerPrompt: z.number().int().min(1).nullish(),
    scheduler: z.string().min(1).nullish(),
    returnTrajectoryLatents: z.boolean().nullish(),
    returnTrajectoryTimesteps: z.boolean().nullish(),
    /** Init image for img2img / inpainting, RGB (its size and bytes are checked with the edit fields). */
    image: z.custom<RgbImage>(isPixels, "expected an image {width, height, data: Uint8Array}").nullish(),
    /** Inpainting mask, one byte per pixel, 255 = repaint (same size as `image`). */
    mask: z.custom<MaskImage>(isPixels, "expected a mask {width, height, data: Uint8Array}").nullish(),
    /** How much of the init image is re-noised, (0, 1]: `floor(steps × strength)` steps run (diffusers' semantics). */
    strength: z.number().gt(0).max(1).nullish(),
    /** Which VAE decodes the final image: `full` (the model's own; default) or `tiny` (its tiny VAE, for speed). */
    vae: z.enum(VAE_CHOICES).nullish(),
    // SDXL (docs/models.md#sdxl): the second text encoder's prompts, size conditioning, the refiner's aesthetic scores.
    prompt2: z.string().max(10_000).nullish(),
    negativePrompt2: z.string().max(10_000).nullish(),
    originalSize: sizePair.nullish(),
    cropsCoordsTopLeft: z.tuple([z.number().int().min(0).max(65_536), z.number().int().min(0).max(65_536)]).nullish(),
    targetSize: sizePair.nullish(),
    aestheticScore: z.number().min(0).max(10).nullish(),
    negativeAestheticScore: z.number().min(0).max(10).nullish(),
    /** SDXL base + refiner ensemble: the fraction of the schedule the base runs before the refiner takes over. */
    denoisingEnd: z.number().gt(0).max(1).nullish(),
    /** Which of the server's models runs it (issue 24); absent: the server's default model. */
    model: modelNameSchema.nullish(),
    /** LoRAs fused into the model's weights for this request (issue 24). */
    loras: loraRefsSchema.nullish(),
  })
  .strict();

/** Pixels to check further (their size against their bytes, in checkEditFields): an object whose `data` is bytes. */
function isPixels(v: unknown): boolean {
  return typeof v === "object" && v !== null && (v as { data?: unknown }).data instanceof Uint8Array;
}

/** A request's fields after {@link requestInitSchema}. */
export type ParsedRequestInit = z.output<typeof requestInitSchema>;

/** Wire (snake_case) name of each init field: the dict's keys and the proto message's fields. */
export const WIRE_NAMES: Readonly<Record<keyof ParsedRequestInit, string>> = {
  requestId: "request_id",
  prompt: "prompt",
  negativePrompt: "negative_prompt",
  height: "height",
  width: "width",
  numInferenceSteps: "num_inference_steps",
  guidanceScale: "guidance_scale",
  guidanceRescale: "guidance_rescale",
  seed: "seed",
  numOutputsPerPrompt: "num_outputs_per_prompt",
  scheduler: "scheduler",
  returnTrajectoryLatents: "return_trajectory_latents",
  returnTrajectoryTimesteps: "return_trajectory_timesteps",
  image: "image",
  mask: "mask_image",
  strength: "strength",
  vae: "vae",
  prompt2: "prompt_2",
  negativePrompt2: "negative_prompt_2",
  originalSize: "original_size",
  cropsCoordsTopLeft: "crops_coords_top_left",
  targetSize: "target_size",
  aestheticScore: "aesthetic_score",
  negativeAestheticScore: "negative_aesthetic_score",
  denoisingEnd: "denoising_end",
  model: "model",
  loras: "loras",
};
const FIELD_OF_WIRE = new Map(Object.entries(WIRE_NAMES).map(([field, wire]) => [wire, field]));

/** An init field's wire name (a zod path of {@link requestInitSchema} → the dict's spelling). */
export const wireNameOf = (path: string): string => (WIRE_NAMES as Record<string, string>)[path] ?? path;

/** Wire shape of a request (snake_case, readable from Python): what `toDict()` writes and `fromDict()` reads. */
export interface OmniDiffusionRequestDict {
  request_id?: string;
  prompt: string;
  negative_prompt?: string | null;
  height?: number | null;
  width?: number | null;
  num_inference_steps?: number | null;
  guidance_scale?: number | null;
  guidance_rescale?: number | null;
  seed?: number | null;
  num_outputs_per_prompt?: number | null;
  scheduler?: string | null;
  return_trajectory_latents?: boolean | null;
  return_trajectory_timesteps?: boolean | null;
  /** Init image for img2img / inpainting: base64 PNG (decoded to RGB; alpha is dropped). */
  image?: string | null;
  /** Inpainting mask: base64 PNG, white = repaint, black = keep (same size as `image`). */
  mask_image?: string | null;
  /** (0, 1]: how much of the init image is re-noised. */
  strength?: number | null;
  /** `full` (default) or `tiny`. */
  vae?: VaeChoice | null;
  /** SDXL: prompt of the second text encoder (default: `prompt`). */
  prompt_2?: string | null;
  negative_prompt_2?: string | null;
  /** SDXL size conditioning, `[height, width]` (default: the image size). */
  original_size?: [number, number] | null;
  /** SDXL, `[top, left]` (default `[0, 0]`). */
  crops_coords_top_left?: [number, number] | null;
  target_size?: [number, number] | null;
  /** SDXL refiner (default 6.0 / 2.5). */
  aesthetic_score?: number | null;
  negative_aesthetic_score?: number | null;
  /** SDXL base + refiner ensemble, (0, 1]: where the refiner takes over (default: the ensemble's, 0.8). */
  denoising_end?: number | null;
  /** The model that runs it (a name the server lists); null: its default. */
  model?: string | null;
  /** LoRAs by name with their scale; empty: none. */
  loras?: LoraRef[] | null;
}

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
  /** SDXL: prompt of the second text encoder (`text_encoder_2`); default `prompt`. */
  prompt2?: string | null;
  /** SDXL: negative prompt of the second text encoder; default `negativePrompt`. */
  negativePrompt2?: string | null;
  /** SDXL size conditioning `[height, width]`; default the image size. */
  originalSize?: [number, number] | null;
  /** SDXL crop conditioning `[top, left]`; default `[0, 0]`. */
  cropsCoordsTopLeft?: [number, number] | null;
  /** SDXL size conditioning `[height, width]`; default the image size. */
  targetSize?: [number, number] | null;
  /** SDXL refiner's aesthetic conditioning; default 6.0. */
  aestheticScore?: number | null;
  /** SDXL refiner's aesthetic conditioning of the unconditional rows; default 2.5. */
  negativeAestheticScore?: number | null;
  /** SDXL base + refiner ensemble, (0, 1]: the fraction of the schedule the base runs (diffusers' `denoising_end`); 1: base only. */
  denoisingEnd?: number | null;
  /** The model that runs it (a name the server lists); null: the server's default model. */
  model?: string | null;
  /** LoRAs fused into the model for this request, `{ name, scale }`. */
  loras?: LoraRef[] | null;
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

/** Inits already parsed by a codec (see {@link requestOfParsed}): the constructor does not parse them again. */
const PARSED = new WeakSet<object>();

/**
 * Parses request fields (camelCase, as {@link requestInitSchema}) once. `what` and `pathStyle` name them in
 * the error the way the caller spelled them (`request` and {@link wireNameOf} for the wire forms).
 */
export function parseRequestInit(input: unknown, what: string, pathStyle?: (path: string) => string): ParsedRequestInit {
  const parsed = requestInitSchema.safeParse(input);
  if (!parsed.success) throw zodToValidationError(parsed.error, what, pathStyle);
  return parsed.data;
}

/** Builds a request from fields {@link parseRequestInit} returned (images decoded by the caller), without a second parse. */
export function requestOfParsed(fields: ParsedRequestInit): OmniDiffusionRequest {
  PARSED.add(fields);
  return new OmniDiffusionRequest(fields as OmniDiffusionRequestInit);
}

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
  prompt2: string | null;
  negativePrompt2: string | null;
  originalSize: [number, number] | null;
  cropsCoordsTopLeft: [number, number] | null;
  targetSize: [number, number] | null;
  aestheticScore: number | null;
  negativeAestheticScore: number | null;
  denoisingEnd: number | null;
  model: string | null;
  loras: LoraRef[];

  constructor(init: OmniDiffusionRequestInit) {
    const d = PARSED.delete(init) ? (init as ParsedRequestInit) : parseRequestInit(definedFields(init), "OmniDiffusionRequest");
    this.requestId = d.requestId ?? newRequestId();
    this.prompt = d.prompt;
    this.negativePrompt = d.negativePrompt ?? null;
    this.height = d.height ?? null;
    this.width = d.width ?? null;
    this.numInferenceSteps = d.numInferenceSteps ?? null;
    this.guidanceScale = d.guidanceScale ?? null;
    this.guidanceRescale = d.guidanceRescale ?? null;
    this.seed = d.seed ?? null;
    this.numOutputsPerPrompt = d.numOutputsPerPrompt ?? 1;
    this.scheduler = d.scheduler ?? null;
    this.returnTrajectoryLatents = d.returnTrajectoryLatents ?? false;
    this.returnTrajectoryTimesteps = d.returnTrajectoryTimesteps ?? false;
    this.image = d.image ?? null;
    this.mask = d.mask ?? null;
    this.strength = d.strength ?? null;
    this.vae = d.vae ?? null;
    this.prompt2 = d.prompt2 ?? null;
    this.negativePrompt2 = d.negativePrompt2 ?? null;
    this.originalSize = d.originalSize ?? null;
    this.cropsCoordsTopLeft = d.cropsCoordsTopLeft ?? null;
    this.targetSize = d.targetSize ?? null;
    this.aestheticScore = d.aestheticScore ?? null;
    this.negativeAestheticScore = d.negativeAestheticScore ?? null;
    this.denoisingEnd = d.denoisingEnd ?? null;
    this.model = d.model ?? null;
    this.loras = d.loras ?? [];
    checkEditFields(this);
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
      image: this.image ? pngOf(this.image).toString("base64") : null,
      mask_image: this.mask ? encodeMaskPng(this.mask).toString("base64") : null,
      strength: this.strength,
      vae: this.vae,
      prompt_2: this.prompt2,
      negative_prompt_2: this.negativePrompt2,
      original_size: this.originalSize,
      crops_coords_top_left: this.cropsCoordsTopLeft,
      target_size: this.targetSize,
      aesthetic_score: this.aestheticScore,
      negative_aesthetic_score: this.negativeAestheticScore,
      denoising_end: this.denoisingEnd,
      model: this.model,
      loras: this.loras.map((l) => ({ name: l.name, scale: l.scale })),
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
   * Validates a snake_case dict (from JSON, a Python peer, a worker) and builds the request, parsing it once.
   * `opts.images` bounds the decode of `image` and `mask_image` (a server passes its upload cap; by default at
   * most 4096² pixels, and never more than a PNG's header implies). Errors name the dict's fields.
   */
  static fromDict(dict: unknown, opts: { images?: Omit<PngDecodeOptions, "field"> } = {}): OmniDiffusionRequest {
    if (dict === null || typeof dict !== "object" || Array.isArray(dict)) return requestOfParsed(parseRequestInit(dict, "request"));
    const entries: [string, unknown][] = [];
    const aliases: string[] = [];
    for (const [k, v] of Object.entries(dict)) {
      const field = FIELD_OF_WIRE.get(k);
      // An unknown key stays as it is, for the schema to refuse by name; a camelCase name is no wire key either.
      if (field) entries.push([field, v]);
      else if (Object.hasOwn(WIRE_NAMES, k)) aliases.push(k);
      else entries.push([k, v]);
    }
    if (aliases.length) throw wireIssue("(root)", `Unrecognized key${aliases.length > 1 ? "s" : ""}: ${aliases.map((k) => JSON.stringify(k)).join(", ")}`, "");
    const fields = Object.fromEntries(entries) as Record<string, unknown>;
    const image = wireString(fields.image, "image");
    const mask = wireString(fields.mask, "mask_image");
    // The cheap fields first: an invalid request is refused before its images are inflated.
    const d = parseRequestInit({ ...fields, image: undefined, mask: undefined }, "request", wireNameOf);
    d.image = image === null ? null : decodeImageField(Buffer.from(image, "base64"), opts.images, "a base64 PNG");
    d.mask = mask === null ? null : decodeMaskField(Buffer.from(mask, "base64"), opts.images, "a base64 PNG");
    return requestOfParsed(d);
  }
}

/** `init` without its undefined entries (an unset field, whatever its name, is no field). */
function definedFields(init: unknown): Record<string, unknown> {
  if (init === null || typeof init !== "object") return {};
  return Object.fromEntries(Object.entries(init).filter(([, v]) => v !== undefined));
}

/** A ValidationError worded as a schema issue of the wire dict. */
function wireIssue(path: string, message: string, field: string): ValidationError {
  const issue = `${path}: ${message}`;
  return new ValidationError(`invalid request: ${issue}`, { field, data: { issues: [issue] } });
}

/** A dict's base64 image field: a non-empty string, or null when unset. */
function wireString(v: unknown, field: string): string | null {
  if (v === null || v === undefined) return null;
  if (typeof v === "string" && v !== "") return v;
  const got = Array.isArray(v) ? "array" : typeof v;
  throw wireIssue(field, typeof v === "string" ? "Too small: expected string to have >=1 characters" : `Invalid input: expected string, received ${got}`, field);
}

/** PNG bytes of an edit field as the request's image (RGB; alpha dropped), bounded by `opts`; errors name `image`. */
export function decodeImageField(bytes: Uint8Array, opts: Omit<PngDecodeOptions, "field"> = {}, form = "PNG bytes"): RgbImage {
  return decodeField(bytes, "image", form, (b) => decodePng(b, { ...opts, field: "image" }));
}

/** PNG bytes of an edit field as the request's mask (by luminance, white = repaint); errors name `mask_image`. */
export function decodeMaskField(bytes: Uint8Array, opts: Omit<PngDecodeOptions, "field"> = {}, form = "PNG bytes"): MaskImage {
  return decodeField(bytes, "mask_image", form, (b) => decodeMaskPng(b, { ...opts, field: "mask_image" }));
}

function decodeField<T>(bytes: Uint8Array, field: string, form: string, decode: (bytes: Uint8Array) => T): T {
  try {
    return decode(bytes);
  } catch (err) {
    // The decoder's errors name the field and keep their class (a pixel cap is a LimitExceededError).
    if (err instanceof ValidationError) throw err;
    throw new ValidationError(`${field}: ${(err as Error).message} (expected ${form})`, { field, cause: err });
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
