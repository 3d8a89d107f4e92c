import { ModelLoadError } from "../errors/omni-error.js";
import type { ModelIndex } from "./model-files.js";
import { OnnxDiffusionPipeline } from "./onnx-diffusion-pipeline.js";
import { SdxlEnsemblePipeline } from "./sdxl/sdxl-ensemble.js";
import type { DiffusionPipeline, PipelineLoadOptions } from "./types.js";

/** Builds a pipeline for a model folder whose model_index.json has been read. */
export type PipelineFactory = (modelDir: string, index: ModelIndex, opts: PipelineLoadOptions) => Promise<DiffusionPipeline>;

const onnxTextToImage: PipelineFactory = (dir, index, opts) => OnnxDiffusionPipeline.load(dir, index, opts);

const sdxlEnsemble: PipelineFactory = (dir, index, opts) => SdxlEnsemblePipeline.load(dir, index, opts);

const registry = new Map<string, PipelineFactory>([
  // The shipped model and every diffusers ONNX text-to-image export share one implementation.
  ["OmniTinyShapesPipeline", onnxTextToImage],
  ["OnnxStableDiffusionPipeline", onnxTextToImage],
  ["ORTStableDiffusionPipeline", onnxTextToImage],
  ["StableDiffusionPipeline", onnxTextToImage],
  ["ORTLatentConsistencyModelPipeline", onnxTextToImage],
  ["LatentConsistencyModelPipeline", onnxTextToImage],
  // SDXL (base, Turbo, refiner): the same pipeline with src/pipelines/sdxl/'s conditioning.
  ["StableDiffusionXLPipeline", onnxTextToImage],
  ["ORTStableDiffusionXLPipeline", onnxTextToImage],
  ["StableDiffusionXLImg2ImgPipeline", onnxTextToImage],
  ["ORTStableDiffusionXLImg2ImgPipeline", onnxTextToImage],
  ["OmniSdxlEnsemblePipeline", sdxlEnsemble],
]);

/** Maps a `_class_name` to a pipeline factory, so users can add their own exports. */
export function registerPipeline(className: string, factory: PipelineFactory): void {
  registry.set(className, factory);
}

export function registeredPipelines(): string[] {
  return [...registry.keys()];
}

export function pipelineFactory(className: string): PipelineFactory {
  const f = registry.get(className);
  if (!f) {
    throw new ModelLoadError(`unknown pipeline class "${className}"; registered: ${registeredPipelines().join(", ")} (add one with registerPipeline)`, {
      data: { className },
    });
  }
  return f;
}
