import { z } from "zod";
import { ValidationError, deserializeError, serializeError, type OmniError, type SerializedError } from "../errors/omni-error.js";
import { decodePng, encodePng, type RgbImage } from "../utils/png.js";
import { zodToValidationError } from "../utils/zod-error.js";

/** One generated image, tagged with the request it belongs to, so results can never be swapped. */
export interface GeneratedImage extends RgbImage {
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
        png_base64: encodePng(img).toString("base64"),
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

  /** Validates a snake_case dict (from a worker, a remote peer) and builds the output; a ValidationError names every unknown or missing field. */
  static fromDict(dict: unknown): DiffusionOutput {
    const parsed = outputDictSchema.safeParse(dict);
    if (!parsed.success) throw zodToValidationError(parsed.error, "DiffusionOutput");
    const d = parsed.data;
    const output = d.output.map((o, i) => {
      const img = decodePng(Buffer.from(o.png_base64, "base64"));
      if (img.width !== o.width || img.height !== o.height) {
        throw new ValidationError(`output.${i}: PNG is ${img.width}x${img.height} but declared ${o.width}x${o.height}`, { field: `output.${i}` });
      }
      return { ...img, requestId: o.request_id, index: o.index, seed: o.seed };
    });
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
