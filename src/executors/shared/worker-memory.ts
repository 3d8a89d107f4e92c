import { totalmem } from "node:os";
import { MACHINE_MEMORY_SHARE, RUNTIME_BYTES } from "../../core/memory-estimate.js";
import { ConfigError } from "../../errors/omni-error.js";
import { onnxWeightBytes } from "../../pipelines/model-files.js";
import { TinyVae } from "../../pipelines/tiny-vae.js";

/** Bytes of weights a worker of the model in `modelDir` loads (with `tinyVae`, if given), read from disk before any process starts. */
export function modelWeightBytesOnDisk(modelDir: string, tinyVae?: string): number {
  return onnxWeightBytes(TinyVae.modelOnnxPaths(modelDir, tinyVae));
}

/**
 * Refuses a worker count whose weights alone (each worker process holds its own copy, plus its runtime) would
 * not fit in this machine's memory, before any worker starts: a ConfigError naming the numbers and the count that
 * fits, instead of the kernel's OOM killer picking a process mid-load.
 */
export function checkWorkersFit(modelDir: string, workers: number, machineBytes = totalmem(), tinyVae?: string): void {
  const weights = modelWeightBytesOnDisk(modelDir, tinyVae);
  const perWorker = weights + RUNTIME_BYTES;
  const budget = machineBytes * MACHINE_MEMORY_SHARE;
  if (workers * perWorker <= budget) return;
  const gib = (b: number) => (b / 1024 ** 3).toFixed(2);
  const fits = Math.floor(budget / perWorker);
  throw new ConfigError(
    `${workers} workers of ${modelDir} need at least ${workers} × ${gib(perWorker)} GiB (weights ${gib(weights)} + runtime ${gib(RUNTIME_BYTES)}) = ${gib(workers * perWorker)} GiB ` +
      `before any image, more than ${Math.round(MACHINE_MEMORY_SHARE * 100)} % of this machine's ${gib(machineBytes)} GiB; ` +
      (fits >= 1 ? `run ${fits} worker${fits === 1 ? "" : "s"} (numGpus / --workers)` : "this model does not fit this machine"),
    { field: "numGpus", data: { workers, weightBytes: weights, perWorkerBytes: perWorker, machineBytes, fits } },
  );
}
