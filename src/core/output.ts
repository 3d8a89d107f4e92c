import { z } from "zod";
import { ValidationError, deserializeError, serializeError, type OmniError, type SerializedError } from "../errors/omni-error.js";
import { lazyPngImage, pngOf, type PngCarrier } from "../utils/png.js";
import { zodToValidationError } from "../utils/zod-error.js";

/**
 * One generated image, tagged with the request it belongs to, so results can never be swapped. An image
 * that arrived as PNG from a remote peer keeps those bytes in `png` (and decodes `data` only when read), so
 * it leaves again without a second encode.
 */
export interface GeneratedImage extends PngCarrier {
  requestId: string;
  /** Index among the request's `numOutputsPerPrompt` images. */
  index: number;
  /** Seed this image's noise came from. */
  seed: number;
}

/** Latents of every denoising step for one request: shape [steps + 1, numOutputs, C, H, W]. */
export interface TrajectoryLatents {
  requestId: string;
  shape: number[];
  data: Float32Array;
}

export interface TrajectoryTimesteps {
  requestId: string;
  timesteps: number[];
}

/** Wall-clock stage durations in milliseconds. */
export interface StageMetrics {
  encodeTextMs?: number;
  denoiseMs?: number;
  decodeMs?: number;
  totalMs?: number;
  queueMs?: number;
  [stage: string]: number | undefined;
}

export interface DiffusionOutputInit {
  output?: GeneratedImage[];
  error?: string | null;
  errors?: Record<string, OmniError>;
  trajectoryLatents?: TrajectoryLatents[] | null;
  trajectoryTimesteps?: TrajectoryTimesteps[] | null;
  metrics?: StageMetrics;
}

// Strict codecs: an unknown or missing field is a ValidationError naming it, so a reply of another shape
// (a worker server's `{"outputs": [...]}` envelope) is refused instead of read as an empty output.
const imageSchema = z
  .object({
    request_id: z.string(),
    index: z.number().int().min(0),
    seed: z.number().int().min(0),
    width: z.number().int().positive(),
    height: z.number().int().positive(),
    png_base64: z.string(),
  })
  .strict();
const serializedErrorSchema = z
  .object({
    name: z.string(),
    code: z.string(),
    message: z.string(),
    data: z.record(z.string(), z.unknown()).optional(),
  })
  .strict();
/** Wire shape of a {@link DiffusionOutput}: `output` is required (possibly empty), the rest optional. */
export const outputDictSchema = z
  .object({
    output: z.array(imageSchema),
    error: z.string().nullish(),
    errors: z.record(z.string(), serializedErrorSchema).nullish(),
    trajectory_latents: z
      .array(z.object({ request_id: z.string(), shape: z.array(z.number().int().min(0)), data_base64: z.string() }).strict())
      .nullish(),
    trajectory_timesteps: z.array(z.object({ request_id: z.string(), timesteps: z.array(z.number()) }).strict()).nullish(),
    metrics: z.record(z.string(), z.number()).nullish(),
  })
  .strict();

export type DiffusionOutputDict = z.input<typeof outputDictSchema>;

/** One image in {@link DiffusionOutputTransfer}: raw RGB, no PNG. */
export interface GeneratedImageTransfer {
  requestId: string;
  index: number;
  seed: number;
  width: number;
  height: number;
  data: Uint8Array;
}

/**
 * The in-machine form of a {@link DiffusionOutput} (worker process → parent, over the IPC channel):
 * images as raw RGB bytes, latents as a Float32Array, errors serialized. No PNG; the channel packs the typed
 * arrays as base64 of their raw bytes (protocol/worker-ipc.ts `packBinary`).
 */
export interface DiffusionOutputTransfer {
  output: GeneratedImageTransfer[];
  error: string | null;
  errors: Record<string, SerializedError>;
  trajectoryLatents: TrajectoryLatents[] | null;
  trajectoryTimesteps: TrajectoryTimesteps[] | null;
  metrics: Record<string, number>;
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * What an executor returns for a batch of requests (vLLM-Omni's `DiffusionOutput`).
 * `output` holds every image of the batch, each tagged with its request id; `error` is a whole-batch
 * failure; `errors` maps request id → that request's own failure (others in the batch still succeed).
 */
export class DiffusionOutput {
  output: GeneratedImage[];
  error: string | null;
  errors: Record<string, OmniError>;
  trajectoryLatents: TrajectoryLatents[] | null;
  trajectoryTimesteps: TrajectoryTimesteps[] | null;
  metrics: StageMetrics;

  constructor(init: DiffusionOutputInit = {}) {
    this.output = init.output ?? [];
    this.error = init.error ?? null;
    this.errors = init.errors ?? {};
    this.trajectoryLatents = init.trajectoryLatents ?? null;
    this.trajectoryTimesteps = init.trajectoryTimesteps ?? null;
    this.metrics = init.metrics ?? {};
  }

  /** Images of one request, in index order. */
  imagesFor(requestId: string): GeneratedImage[] {
    return this.output.filter((o) => o.requestId === requestId).sort((a, b) => a.index - b.index);
  }

  /** Concatenates outputs of sub-batches (e.g. one per worker rank). */
  static merge(parts: DiffusionOutput[]): DiffusionOutput {
    const errors = parts.map((p) => p.error).filter((e): e is string => !!e);
    const lat = parts.flatMap((p) => p.trajectoryLatents ?? []);
    const ts = parts.flatMap((p) => p.trajectoryTimesteps ?? []);
    const metrics: StageMetrics = {};
    for (const p of parts) for (const [k, v] of Object.entries(p.metrics)) if (v !== undefined) metrics[k] = Math.max(metrics[k] ?? 0, v);
    return new DiffusionOutput({
      output: parts.flatMap((p) => p.output),
      error: errors.length ? errors.join("; ") : null,
      errors: Object.assign({}, ...parts.map((p) => p.errors)),
      trajectoryLatents: lat.length ? lat : null,
      trajectoryTimesteps: ts.length ? ts : null,
      metrics,
    });
  }

  /** Snake_case JSON; images as base64 PNG, latents as base64 little-endian float32. */
  toDict() {
    return {
      output: this.output.map((img) => ({
        request_id: img.requestId,
        index: img.index,
        seed: img.seed,
        width: img.width,
        height: img.height,
        png_base64: pngOf(img).toString("base64"),
      })),
      error: this.error,
      errors: Object.fromEntries(Object.entries(this.errors).map(([k, e]) => [k, serializeError(e)])) as Record<string, SerializedError>,
      trajectory_latents: this.trajectoryLatents?.map((t) => ({
        request_id: t.requestId,
        shape: t.shape,
        data_base64: Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).toString("base64"),
      })) ?? null,
      trajectory_timesteps: this.trajectoryTimesteps?.map((t) => ({ request_id: t.requestId, timesteps: t.timesteps })) ?? null,
      metrics: Object.fromEntries(Object.entries(this.metrics).filter(([, v]) => v !== undefined)) as Record<string, number>,
    };
  }

  /** The raw {@link DiffusionOutputTransfer} form, for a structured-clone channel (no PNG encode). */
  toTransfer(): DiffusionOutputTransfer {
    return {
      output: this.output.map((img) => ({ requestId: img.requestId, index: img.index, seed: img.seed, width: img.width, height: img.height, data: img.data })),
      error: this.error,
      errors: Object.fromEntries(Object.entries(this.errors).map(([k, e]) => [k, serializeError(e)])),
      trajectoryLatents: this.trajectoryLatents,
      trajectoryTimesteps: this.trajectoryTimesteps,
      metrics: Object.fromEntries(Object.entries(this.metrics).filter(([, v]) => v !== undefined)) as Record<string, number>,
    };
  }

  /**
   * Rebuilds an output from {@link DiffusionOutputTransfer} (sent by our own worker process). Only the
   * shape is checked (each image's byte count, each latent's length), not re-validated field by field.
   */
  static fromTransfer(t: unknown): DiffusionOutput {
    const bad = (what: string) => new ValidationError(`DiffusionOutput transfer: ${what}`, { field: what.split(" ")[0] });
    if (!isRecord(t) || !Array.isArray(t.output)) throw bad("output must be an array");
    const output = (t.output as unknown[]).map((o, i): GeneratedImage => {
      if (!isRecord(o) || typeof o.requestId !== "string" || !(o.data instanceof Uint8Array) || typeof o.width !== "number" || typeof o.height !== "number") {
        throw bad(`output.${i} is not an image`);
      }
      if (o.data.length !== o.width * o.height * 3) throw bad(`output.${i} has ${o.data.length} bytes for ${o.width}x${o.height} RGB`);
      return { requestId: o.requestId, index: o.index as number, seed: o.seed as number, width: o.width, height: o.height, data: o.data };
    });
    const lat = Array.isArray(t.trajectoryLatents) ? (t.trajectoryLatents as TrajectoryLatents[]) : null;
    lat?.forEach((l, i) => {
      if (!(l.data instanceof Float32Array) || l.data.length !== l.shape.reduce((a, b) => a * b, 1)) throw bad(`trajectoryLatents.${i} does not match its shape`);
    });
    const errors = isRecord(t.errors) ? (t.errors as Record<string, SerializedError>) : {};
    return new DiffusionOutput({
      output,
      error: typeof t.error === "string" ? t.error : null,
      errors: Object.fromEntries(Object.entries(errors).map(([k, e]) => [k, deserializeError(e)])),
      trajectoryLatents: lat,
      trajectoryTimesteps: Array.isArray(t.trajectoryTimesteps) ? (t.trajectoryTimesteps as TrajectoryTimesteps[]) : null,
      metrics: isRecord(t.metrics) ? (t.metrics as StageMetrics) : {},
    });
  }

  /** Validates a snake_case dict (from a worker, a remote peer) and builds the output; a ValidationError names every unknown or missing field. */
  static fromDict(dict: unknown): DiffusionOutput {
    const parsed = outputDictSchema.safeParse(dict);
    if (!parsed.success) throw zodToValidationError(parsed.error, "DiffusionOutput");
    const d = parsed.data;
    // Kept as PNG: decoded only if someone reads the pixels, sent on unchanged otherwise.
    const output = d.output.map((o, i): GeneratedImage =>
      lazyPngImage(Buffer.from(o.png_base64, "base64"), o.width, o.height, { requestId: o.request_id, index: o.index, seed: o.seed }, `output.${i}`),
    );
    const lat = d.trajectory_latents?.map((t, i) => {
      const buf = Buffer.from(t.data_base64, "base64");
      const n = t.shape.reduce((a, b) => a * b, 1);
      if (buf.byteLength !== n * 4) {
        throw new ValidationError(`trajectory_latents.${i}: ${buf.byteLength} bytes for shape [${t.shape}]`, { field: `trajectory_latents.${i}` });
      }
      const data = new Float32Array(n);
      new Uint8Array(data.buffer).set(buf);
      return { requestId: t.request_id, shape: t.shape, data };
    });
    return new DiffusionOutput({
      output,
      error: d.error ?? null,
      errors: Object.fromEntries(Object.entries(d.errors ?? {}).map(([k, e]) => [k, deserializeError(e)])),
      trajectoryLatents: lat ?? null,
      trajectoryTimesteps: d.trajectory_timesteps?.map((t) => ({ requestId: t.request_id, timesteps: t.timesteps })) ?? null,
      metrics: d.metrics ?? {},
    });
  }
}
