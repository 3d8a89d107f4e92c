import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { ModelLoadError } from "../errors/omni-error.js";

/** model_index.json of a diffusers folder: `_class_name` plus one entry per component. */
export interface ModelIndex {
  _class_name: string;
  [component: string]: unknown;
}

/** Reads a JSON file of a model folder, with an error that says which file and why. */
export function readModelJson<T = Record<string, unknown>>(modelDir: string, rel: string, required = true): T | null {
  const path = join(modelDir, rel);
  if (!existsSync(path)) {
    if (!required) return null;
    throw new ModelLoadError(`model folder ${modelDir} has no ${rel}`, { data: { modelDir, file: rel } });
  }
  try {
    return JSON.parse(readFileSync(path, "utf8")) as T;
  } catch (err) {
    throw new ModelLoadError(`${path} is not valid JSON: ${(err as Error).message}`, { cause: err, data: { modelDir, file: rel } });
  }
}

/** Checks the folder exists and reads its model_index.json. */
export function readModelIndex(modelDir: string): ModelIndex {
  const dir = resolve(modelDir);
  if (!existsSync(dir)) throw new ModelLoadError(`model folder not found: ${dir}`, { data: { modelDir: dir } });
  const index = readModelJson<ModelIndex>(dir, "model_index.json")!;
  if (typeof index._class_name !== "string") {
    throw new ModelLoadError(`${join(dir, "model_index.json")} has no "_class_name"`, { data: { modelDir: dir } });
  }
  return index;
}

/** Path of a component's ONNX file (`<component>/model.onnx`), or a clear error when it is missing. */
export function componentPath(modelDir: string, component: string): string {
  const path = join(modelDir, component, "model.onnx");
  if (!existsSync(path)) {
    throw new ModelLoadError(`model folder ${modelDir} is missing ${component}/model.onnx`, { data: { modelDir, component } });
  }
  return path;
}

export { onnxWeightBytes } from "../core/worker-count.js";
