import type { BatchingPolicy } from "../core/config.js";
import type { PipelineLoadOptions } from "../core/pipeline-load-options.js";
import type { MaxCallMs } from "../pipelines/call-planner.js";
import type { UnetProfile } from "../pipelines/unet-profile.js";
import type { LoraResolver, PipelineLoader } from "./model-cache.js";

/** How to build a {@link DiffusionWorker} around a loaded pipeline. */
export interface DiffusionWorkerOptions {
  rank: number;
  batching?: BatchingPolicy;
  maxBatchRows?: number;
  /** The step loop's compute budget per UNet call (default `"auto"`, see docs/batching.md). */
  maxCallMs?: MaxCallMs;
  /** Prices the UNet calls (default: learned from the loop's own calls; tests give a fixed one). */
  unetProfile?: UnetProfile;
  /** The folder `pipeline` was loaded from. */
  modelDir?: string;
  /** The name `pipeline`'s model goes by (default: `defaultModel`, else "default"). */
  modelName?: string;
  /** Every model this worker may serve, name → folder (default: only `pipeline`'s). */
  models?: Readonly<Record<string, string>>;
  /** The name of `pipeline`'s model in `models`: what a request without `model` runs. */
  defaultModel?: string;
  /** How the other models load. */
  load?: PipelineLoadOptions;
  /** Loads a model (default: pipelines/load.ts `loadPipeline`); tests inject a gated one. */
  loader?: PipelineLoader;
  /** A LoRA name → its file (default: every LoRA is unknown). */
  resolveLora?: LoraResolver;
  maxLoadedModels?: number;
  /** Budget of the loaded models' estimated bytes; 0 or absent: unchecked. */
  maxModelMemory?: number;
}
