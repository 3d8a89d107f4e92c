import { availableParallelism } from "node:os";
import { ConfigError } from "../errors/omni-error.js";
import { resolveModelSpec } from "../core/model-path.js";
import { readModelIndex } from "./model-files.js";
import { pipelineFactory } from "./registry.js";
import type { DiffusionPipeline, PipelineLoadOptions } from "./types.js";

/**
 * Loads a model in the diffusers ONNX layout (a folder, a built-in name such as `"tiny-shapes"`, or a pulled
 * Hugging Face id; see resolveModelSpec): reads model_index.json, picks the pipeline class
 * (`opts.modelClassName` or `_class_name`) from the registry and creates its onnxruntime sessions.
 * `intraOpNumThreads` defaults to the machine's cores (onnxruntime needs a number, not undefined).
 *
 * @example
 * ```ts
 * const pipeline = await loadPipeline("tiny-shapes");
 * ```
 */
export async function loadPipeline(modelDir: string, opts: PipelineLoadOptions = {}): Promise<DiffusionPipeline> {
  if (opts.loras?.length) {
    // The fusing lands with issue 24's LoRA work; until then a LoRA is refused, never silently ignored.
    throw new ConfigError(`LoRAs are not supported by this build (asked for ${opts.loras.map((l) => l.name).join(", ")})`, { field: "loras" });
  }
  const dir = resolveModelSpec(modelDir);
  const index = readModelIndex(dir);
  const withDefaults = { ...opts, intraOpNumThreads: opts.intraOpNumThreads ?? availableParallelism() };
  return pipelineFactory(opts.modelClassName ?? index._class_name)(dir, index, withDefaults);
}
