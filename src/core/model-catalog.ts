/**
 * The models a server knows (issue 24): `--model DIR` given more than once, and every model under
 * `--models-dir DIR` (a subfolder with a model_index.json, named by its folder, or a pulled Hub repo of a Hub cache
 * folder, named `owner/name`). A name maps to its folder; the cache in each worker loads them on first use.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { ConfigError } from "../errors/omni-error.js";
import { findCachedSnapshot } from "./hub-cache.js";
import { modelDisplayName, resolveModelSpec } from "./model-path.js";
import { onnxFilesUnder, onnxWeightBytes } from "./worker-count.js";

/** Most models one `--models-dir` scan takes: a folder of thousands is a mistake, not a catalog. */
export const MAX_CATALOG_MODELS = 256;

/** model_index.json is a few hundred bytes; a bigger one is not a model index. */
const MAX_INDEX_BYTES = 64 * 1024;

/** One model a server can serve, loaded or not. */
export interface CatalogModel {
  /** What requests name it by (`model`, `sd_model_checkpoint`): its folder's name, or `owner/name` for a Hub snapshot. */
  name: string;
  dir: string;
  /** model_index.json's `_class_name` (the layout: `StableDiffusionPipeline`, `LatentConsistencyModelPipeline`, ...). */
  className: string;
  /** Bytes of its ONNX weights on disk. */
  weightBytes: number;
}

/**
 * Every model of a `--models-dir`: each subfolder with a model_index.json, and each Hub cache repo folder
 * (`models--owner--name`) with a snapshot of `main`. Sorted by name, so the first one is stable across scans.
 */
export function scanModelsDir(dir: string): Record<string, string> {
  const root = resolve(dir);
  if (!existsSync(root) || !statSync(root).isDirectory()) throw new ConfigError(`modelsDir: ${root} is not a folder`, { field: "modelsDir" });
  const found: Record<string, string> = {};
  for (const e of readdirSync(root, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    if (!e.isDirectory()) continue;
    const sub = join(root, e.name);
    const hub = /^models--(.+)$/.exec(e.name);
    if (hub) {
      const repoId = hub[1]!.split("--").join("/");
      const snap = findCachedSnapshot(repoId, "main", root);
      if (snap && existsSync(join(snap, "model_index.json"))) found[repoId] = snap;
    } else if (existsSync(join(sub, "model_index.json"))) {
      found[e.name] = sub;
    }
    if (Object.keys(found).length > MAX_CATALOG_MODELS) {
      throw new ConfigError(`modelsDir: ${root} holds more than ${MAX_CATALOG_MODELS} models`, { field: "modelsDir" });
    }
  }
  return found;
}

/**
 * The name → folder map of a config: `models` (specs: folders, built-in names, pulled Hub ids; or an already
 * built map), then `modelsDir`'s scan. One name for two folders is a ConfigError naming both.
 */
export function buildModelMap(models: readonly string[] | Readonly<Record<string, string>> | undefined, modelsDir: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  const add = (name: string, dir: string, field: string) => {
    if (Object.hasOwn(out, name) && out[name] !== dir) {
      throw new ConfigError(`${field}: two models are named "${name}" (${out[name]} and ${dir}); give one of them another folder name`, { field });
    }
    out[name] = dir;
  };
  if (Array.isArray(models)) for (const spec of models as string[]) {
    const dir = resolveModelSpec(spec);
    add(modelDisplayName(dir), dir, "models");
  }
  else if (models) for (const [name, dir] of Object.entries(models)) add(name, resolveModelSpec(dir), "models");
  if (modelsDir) for (const [name, dir] of Object.entries(scanModelsDir(modelsDir))) add(name, dir, "modelsDir");
  return out;
}

/** Describes each model of a name → folder map (reads model_index.json and the weights' sizes; loads nothing). */
export function describeCatalog(models: Readonly<Record<string, string>>): CatalogModel[] {
  return Object.entries(models).map(([name, dir]) => ({ name, dir, className: classNameOf(dir), weightBytes: onnxWeightBytes(onnxFilesUnder(dir)) }));
}

function classNameOf(dir: string): string {
  const p = join(dir, "model_index.json");
  try {
    if (statSync(p).size > MAX_INDEX_BYTES) return "unknown";
    const v = JSON.parse(readFileSync(p, "utf8")) as { _class_name?: unknown };
    return typeof v._class_name === "string" ? v._class_name : "unknown";
  } catch {
    return "unknown";
  }
}
