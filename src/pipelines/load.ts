import { availableParallelism } from "node:os";
import { resolveModelSpec } from "../core/model-path.js";
import { readModelIndex } from "./model-files.js";
import { FUSED_RESIDENT_PER_BYTE } from "./lora/fuse-loras.js";
import { loraGraphEdits, lorasNotApplied } from "./lora/lora-load-options.js";
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
  const dir = resolveModelSpec(modelDir);
  const index = readModelIndex(dir);
  const withDefaults = { ...opts, intraOpNumThreads: opts.intraOpNumThreads ?? availableParallelism() };
  const className = opts.modelClassName ?? index._class_name;
  if (!opts.loras?.length) return pipelineFactory(className)(dir, index, withDefaults);
  // LoRAs are fused (and every refusal raised) before any session exists; the sessions load the fused graphs.
  const loras = await loraGraphEdits(dir, opts.loras);
  const graphEditBytes = Math.round(loras.fused.patchedBytes * FUSED_RESIDENT_PER_BYTE);
  const pipeline = await pipelineFactory(className)(dir, index, { ...withDefaults, graphEdits: loras.graphEdits, graphEditBytes } as PipelineLoadOptions);
  const unapplied = loras.unapplied();
  if (unapplied.length) {
    await pipeline.release();
    throw lorasNotApplied(className, unapplied);
  }
  return pipeline;
}
