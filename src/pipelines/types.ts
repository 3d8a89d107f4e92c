import type { DiffusionOutput, GeneratedImage } from "../core/output.js";
import type { OmniDiffusionRequest } from "../core/request.js";

/** How to create onnxruntime sessions. */
export interface PipelineLoadOptions {
  /** Pipeline class to use instead of model_index.json's `_class_name`. */
  modelClassName?: string;
  executionProvider?: "cpu" | "cuda";
  /** onnxruntime intra-op threads for each session. */
  intraOpNumThreads?: number;
}

/** Progress of one request: step `step` of `totalSteps` just finished. */
export interface StepProgress {
  requestId: string;
  step: number;
  totalSteps: number;
  /** Decoded preview of the current predicted image, when asked for. */
  preview?: GeneratedImage[];
}

export interface GenerateOptions {
  /** Called after every denoising step of every request. */
  onProgress?: (p: StepProgress) => void;
  /** Checked between steps; a request for which it returns true stops with an AbortedError. */
  isAborted?: (requestId: string) => boolean;
  /** Aborts the whole call between steps. */
  signal?: AbortSignal;
  /** Decode a preview every N steps into StepProgress.preview (0 = never). */
  previewEvery?: number;
}

/** What `getStats`/`info` reports about a loaded model. */
export interface PipelineInfo {
  modelDir: string;
  className: string;
  /** Loaded ONNX components (empty while asleep). */
  components: string[];
  /** Native image size the model was trained at. */
  width: number;
  height: number;
  /** Multiple that width/height must be divisible by. */
  sizeMultiple: number;
  defaults: { numInferenceSteps: number; guidanceScale: number; scheduler: string };
  asleep: boolean;
}

/**
 * A loaded text-to-image pipeline. Workers hold one each; `generate` is built on the step-level
 * interface (prepare → step… → decode) that the batching engine can drive directly.
 */
export interface DiffusionPipeline {
  readonly info: PipelineInfo;
  /** Resolves defaults and checks a request against the model (size multiple, steps, scheduler); throws ValidationError. */
  validate(request: OmniDiffusionRequest): void;
  /** Runs the requests as one batch where shapes allow; per-request failures land in `errors`. */
  generate(requests: OmniDiffusionRequest[], opts?: GenerateOptions): Promise<DiffusionOutput>;
  /** Drops the ONNX sessions (frees memory); `reload` brings them back. */
  release(): Promise<void>;
  reload(): Promise<void>;
}
