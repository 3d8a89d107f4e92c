import { InvalidArgumentError, type Command } from "commander";

/** The model registry's flags (issue 24; docs/models.md#several-models-per-server). */
export interface ModelFlags {
  /** `--model` once or more: the first is the default unless `--default-model` says otherwise. */
  model?: string[];
  modelsDir?: string;
  defaultModel?: string;
  maxLoadedModels?: number;
  maxModelMemory?: number;
}

const UNITS: Record<string, number> = { "": 1, b: 1, k: 1024, kb: 1024, kib: 1024, m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3, t: 1024 ** 4, tb: 1024 ** 4, tib: 1024 ** 4 };

/** "8GiB", "512M", "1073741824" → bytes (binary units: 1 G = 1024³). */
export function bytesArg(v: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(v);
  const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new InvalidArgumentError(`expected a size such as 8GiB, 512M or a byte count, got "${v}"`);
  const n = Math.round(Number(m[1]) * unit);
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError(`size "${v}" is too large`);
  return n;
}

/** `--max-loaded-models`: an integer in [1, 1024] (options.ts imports this module, so its intArg is not reused). */
function countArg(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 1024) throw new InvalidArgumentError(`expected an integer in [1, 1024], got "${v}"`);
  return n;
}

/** Adds `--model` (repeatable), `--models-dir`, `--default-model`, `--max-loaded-models` and `--max-model-memory`. */
export function addModelFlags(cmd: Command): Command {
  return cmd
    .option("--model <model>", "model folder, built-in name (tiny-shapes) or pulled Hugging Face id (owner/name); give it more than once to serve several models", (v: string, prev?: string[]) => [...(prev ?? []), v])
    .option("--models-dir <dir>", "serve every model under this folder (each subfolder with a model_index.json, named by its folder; a Hugging Face cache's pulled repos count)")
    .option("--default-model <name>", "the model a request without one runs (default: the first --model, else the first of --models-dir)")
    .option("--max-loaded-models <n>", "most models (× LoRA sets) each worker keeps loaded; the least recently used idle one is unloaded first", countArg)
    .option("--max-model-memory <size>", "memory the loaded models of each worker may take, e.g. 8GiB (default: the worker's share of this machine's memory; 0: unchecked)", bytesArg);
}

/** The config fields of the model flags. */
export function modelConfigFromFlags(f: ModelFlags) {
  const models = f.model ?? [];
  return {
    ...(models.length === 1 ? { model: models[0] } : {}),
    ...(models.length > 1 ? { models } : {}),
    ...(f.modelsDir ? { modelsDir: f.modelsDir } : {}),
    ...(f.defaultModel ? { defaultModel: f.defaultModel } : {}),
    ...(f.maxLoadedModels !== undefined ? { maxLoadedModels: f.maxLoadedModels } : {}),
    ...(f.maxModelMemory !== undefined ? { maxModelMemory: f.maxModelMemory } : {}),
  };
}
