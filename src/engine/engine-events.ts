import type { FieldNamer, RequestLimits } from "../core/limits.js";
import type { StepBatchInfo, StepProgress } from "../core/progress.js";

/** Per-call options of {@link DiffusionEngine.generate}. */
export interface EngineGenerateOptions {
  signal?: AbortSignal;
  onProgress?: (p: StepProgress) => void;
  /** Decode a preview of the predicted image every N steps into `onProgress`'s `preview`, where the executor can. */
  previewEvery?: number;
  /** How a refusal names the request's fields (default camelCase): a CLI flag, an API parameter, a wire path. */
  fieldName?: FieldNamer;
  /** The caller's own limits, tightened over the config's for this request (a server's `--max-steps`). */
  limits?: Partial<RequestLimits>;
}

/** What the engine reports after each batch it ran (for metrics). */
export interface BatchEvent {
  /** Requests in the batch. */
  requests: number;
  /** Images the batch asked for (sum of `numOutputsPerPrompt`). */
  images: number;
  /** Requests of the batch that ended with an error. */
  failed: number;
  /** Wall-clock time of the executor call, ms. */
  durationMs: number;
}

/** What the engine reports after each denoising step of each request (for metrics). */
export interface StepEvent {
  requestId: string;
  step: number;
  totalSteps: number;
  /** True for the first step the request finished (its time to first step is `sinceQueuedMs`). */
  firstStep: boolean;
  /** Time since the request entered the engine's queue, ms. */
  sinceQueuedMs: number;
  /** The UNet call the step ran in, when the executor reports it. */
  batch?: StepBatchInfo;
}

/** Live counters, for health pages and metrics. */
export interface EngineStats {
  queued: number;
  inFlight: number;
  batchesRun: number;
  requestsDone: number;
  requestsFailed: number;
}
