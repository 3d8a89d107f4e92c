import { serializeError, type OmniError } from "../errors/omni-error.js";
import { pngOf } from "../utils/png.js";
import type { DiffusionOutput, GeneratedImage, StageMetrics, TrajectoryLatents } from "./output.js";
import type { OmniDiffusionRequest } from "./request.js";

/**
 * What the engine hands back for one request (vLLM-Omni's `OmniRequestOutput`): its images or its error,
 * never both empty. `engine.step` returns one per request, in request order.
 */
export class OmniRequestOutput {
  readonly requestId: string;
  readonly prompt: string;
  readonly images: GeneratedImage[];
  /** Seed of the first image (image i used `seed + i`). */
  readonly seed: number | null;
  readonly metrics: StageMetrics;
  readonly latents: TrajectoryLatents | null;
  readonly timesteps: number[] | null;
  readonly error: OmniError | null;

  constructor(init: {
    requestId: string;
    prompt: string;
    images?: GeneratedImage[];
    seed?: number | null;
    metrics?: StageMetrics;
    latents?: TrajectoryLatents | null;
    timesteps?: number[] | null;
    error?: OmniError | null;
  }) {
    this.requestId = init.requestId;
    this.prompt = init.prompt;
    this.images = init.images ?? [];
    this.seed = init.seed ?? this.images[0]?.seed ?? null;
    this.metrics = init.metrics ?? {};
    this.latents = init.latents ?? null;
    this.timesteps = init.timesteps ?? null;
    this.error = init.error ?? null;
  }

  get finished(): boolean {
    return true;
  }

  /** PNG bytes of each image. */
  pngs(): Buffer[] {
    return this.images.map((i) => pngOf(i));
  }

  /**
   * Picks this request's part out of a batch's DiffusionOutput. A request that got no image and no error
   * of its own gets the batch error, or an explicit "no output" error: never a silent empty result.
   * `metrics` (default: the batch's) lets a caller add its own timings without building the output twice.
   */
  static fromDiffusionOutput(request: OmniDiffusionRequest, out: DiffusionOutput, missing: () => OmniError, metrics: StageMetrics = out.metrics): OmniRequestOutput {
    const images = out.imagesFor(request.requestId);
    // hasOwn: request ids come from clients, and "constructor" must not read Object.prototype's.
    const own = Object.hasOwn(out.errors, request.requestId) ? out.errors[request.requestId] : undefined;
    const error = own ?? (images.length === 0 ? missing() : null);
    return new OmniRequestOutput({
      requestId: request.requestId,
      prompt: request.prompt,
      images: error ? [] : images,
      seed: images[0]?.seed ?? request.seed,
      metrics,
      latents: out.trajectoryLatents?.find((l) => l.requestId === request.requestId) ?? null,
      timesteps: out.trajectoryTimesteps?.find((t) => t.requestId === request.requestId)?.timesteps ?? null,
      error,
    });
  }

  toDict() {
    return {
      request_id: this.requestId,
      prompt: this.prompt,
      seed: this.seed,
      images: this.images.map((i) => ({ index: i.index, seed: i.seed, width: i.width, height: i.height, png_base64: pngOf(i).toString("base64") })),
      metrics: this.metrics,
      error: this.error ? serializeError(this.error) : null,
    };
  }
}
