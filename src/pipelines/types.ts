import type { DiffusionOutput, GeneratedImage } from "../core/output.js";
import type { OmniDiffusionRequest } from "../core/request.js";
import type { ModelLimits } from "../core/model-limits.js";
import type { DenoiseState, ResolvedParams } from "./denoise-state.js";
import type { StepProgress } from "../core/progress.js";
import type { PipelineInfo } from "../core/pipeline-info.js";

export type { StepBatchInfo, StepProgress } from "../core/progress.js";
// The load options and the model info cross the worker IPC, so they live in core, below protocol/.
export type { PipelineInfo } from "../core/pipeline-info.js";
export type { PipelineLoadOptions } from "../core/pipeline-load-options.js";

export interface GenerateOptions {
  /** Called after every denoising step of every request. */
  onProgress?: (p: StepProgress) => void;
  /** Checked between steps; a request for which it returns true stops with an AbortedError. */
  isAborted?: (requestId: string) => boolean;
  /** Aborts the whole call between steps. */
  signal?: AbortSignal;
  /** Decode a preview every N steps into StepProgress.preview (0 = never): for every request, or per request id. */
  previewEvery?: number | Readonly<Record<string, number>>;
}

/** One UNet call made by {@link SteppablePipeline.step}: which states it advanced, its rows and duration. */
export interface UnetCall {
  states: DenoiseState[];
  rows: number;
  /** The whole step of these states: the UNet plus the samplers' math around it. */
  ms: number;
  /** Inside the UNet session alone, when the pipeline measures it. */
  unetMs?: number;
}

/**
 * A loaded text-to-image pipeline. Workers hold one each. Pipelines with the step-level interface
 * ({@link SteppablePipeline}) are driven by the worker's step loop; others are called one `generate` at a time.
 */
export interface DiffusionPipeline {
  readonly info: PipelineInfo;
  /** What the model can serve (the worker's `describeModel` RPC); pipelines without it get only the config limits. */
  describe?(): ModelLimits;
  /** Resolves defaults and checks a request against the model (size multiple, steps, scheduler); throws ValidationError. */
  validate(request: OmniDiffusionRequest): void;
  /** Runs the requests as one batch where shapes allow; per-request failures land in `errors`. */
  generate(requests: OmniDiffusionRequest[], opts?: GenerateOptions): Promise<DiffusionOutput>;
  /** Drops the ONNX sessions (frees memory); `reload` brings them back. */
  release(): Promise<void>;
  reload(): Promise<void>;
}

/**
 * A pipeline with the step-level interface the continuous batcher drives: requests are prepared (prompts
 * encoded, noise drawn) once, advanced one step at a time in shared UNet calls, and decoded as they finish.
 * Pipelines without it still serve every batching policy, one `generate` call at a time. `resolve` runs once per
 * request (the worker carries its result into `prepare`); it should check without building samplers.
 */
export interface SteppablePipeline extends DiffusionPipeline {
  /** Most UNet rows per call; `step` splits bigger groups. */
  maxBatchRows: number;
  /** Applies the model's defaults and checks the request; throws ValidationError. */
  resolve(request: OmniDiffusionRequest): ResolvedParams;
  /** Encodes the prompts of all `requests` in one text-encoder call and draws each image's initial noise. */
  prepare(requests: OmniDiffusionRequest[], resolved?: ResolvedParams[]): Promise<DenoiseState[]>;
  /** Advances every unfinished state one step; one UNet call per latent shape (split at `maxBatchRows`). */
  step(states: DenoiseState[]): Promise<UnetCall[]>;
  /** Decodes the latents (or, for previews, the predicted clean sample) of each state. */
  decode(states: DenoiseState[], preview?: boolean): Promise<GeneratedImage[][]>;
  /** Frees what a state holds outside the JS heap (device buffers) when it leaves unfinished (aborted, failed). */
  discard?(state: DenoiseState): void;
}

/** True when `p` has the step-level interface (checked by shape, so registered third-party pipelines qualify). */
export function isSteppable(p: DiffusionPipeline): p is SteppablePipeline {
  const s = p as Partial<SteppablePipeline>;
  return typeof s.prepare === "function" && typeof s.step === "function" && typeof s.decode === "function" && typeof s.resolve === "function";
}
