/**
 * How many local worker processes a model gets when the config does not say (`numGpus` absent): as many as fit
 * in memory while the cores stay shared, one on a GPU. Each worker holds its own copy of the weights; on a CPU
 * one UNet call of an SD-size model already keeps every core busy (onnxruntime's intra-op threads), so a second
 * worker there would only split the cores, while a machine with cores to spare runs one worker per
 * {@link CORES_PER_BIG_WORKER}. Small models batch many requests per call in one worker.
 */
import { existsSync, readdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { MACHINE_MEMORY_SHARE, RUNTIME_BYTES } from "./memory-estimate.js";

/** Weights from which a model counts as big (SD-size): the memory settings and the worker count change there. */
export const BIG_MODEL_WEIGHT_BYTES = 256 * 1024 ** 2;

/** Cores one worker of a big model keeps busy in one UNet call (onnxruntime's threads scale to about this many). */
export const CORES_PER_BIG_WORKER = 8;

/** Peak resident memory per byte of weights a worker of a big model reaches at its native size (bench/realscale.ts: ≤ 1.25). */
export const PEAK_PER_WEIGHT_BYTE = 1.3;

export interface WorkerCountChoice {
  workers: number;
  /** One line saying why, for the start-up log; null where there is nothing to say (small models: one, as always). */
  reason: string | null;
}

export interface WorkerCountInput {
  weightBytes: number;
  machineBytes: number;
  cores: number;
  device: string;
}

const gib = (b: number) => `${(b / 1024 ** 3).toFixed(2)} GiB`;

export function defaultWorkerCount({ weightBytes, machineBytes, cores, device }: WorkerCountInput): WorkerCountChoice {
  if (device !== "cpu") return { workers: 1, reason: null };
  const perWorker = weightBytes * PEAK_PER_WEIGHT_BYTE + RUNTIME_BYTES;
  const memoryFits = Math.max(1, Math.floor((machineBytes * MACHINE_MEMORY_SHARE) / perWorker));
  if (weightBytes < BIG_MODEL_WEIGHT_BYTES) {
    return { workers: 1, reason: null };
  }
  const coresFit = Math.max(1, Math.floor(cores / CORES_PER_BIG_WORKER));
  const workers = Math.min(memoryFits, coresFit);
  const plural = (n: number) => `${n} worker${n === 1 ? "" : "s"}`;
  return {
    workers,
    reason:
      `${plural(workers)}: ${gib(weightBytes)} of weights, about ${gib(perWorker)} per worker at its native size, so memory fits ${plural(memoryFits)}; ` +
      `one UNet call keeps ${CORES_PER_BIG_WORKER} cores busy and this machine has ${cores}, so ${coresFit === 1 ? "one worker uses them all" : `${plural(coresFit)} share them`} (--workers N overrides)`,
  };
}

/**
 * Bytes of weights behind ONNX files: each `model.onnx` plus the external-data files beside it (diffusers'
 * `weights.pb`, Optimum's `model.onnx_data`, per-tensor files): everything in its folder but JSON configs.
 */
export function onnxWeightBytes(onnxPaths: readonly string[]): number {
  let total = 0;
  for (const dir of new Set(onnxPaths.map((p) => dirname(p)))) {
    for (const f of readdirSync(dir, { withFileTypes: true })) {
      if (f.isFile() && !f.name.endsWith(".json")) total += statSync(join(dir, f.name)).size;
    }
  }
  return total;
}

/** Every `model.onnx` in the folders of `dir` and one level below them (a model's components, its `tiny_vae/…`). */
export function onnxFilesUnder(dir: string): string[] {
  const found: string[] = [];
  const walk = (d: string, depth: number) => {
    if (existsSync(join(d, "model.onnx"))) found.push(join(d, "model.onnx"));
    if (depth === 0) return;
    for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(join(d, e.name), depth - 1);
  };
  if (existsSync(dir)) walk(dir, 2);
  return found;
}
