import { resolve as resolvePath } from "node:path";
import type { OmniDiffusionConfig } from "../../core/config.js";
import type { DiffusionWorkerInit } from "../../workers/diffusion-worker.js";

/**
 * What a local worker needs from the config to load its pipeline: the one translation from
 * {@link OmniDiffusionConfig} to a worker's init, shared by the in-process executor and the worker
 * processes of the multi-process one (which add their heartbeat interval).
 */
export function workerInitOf(config: OmniDiffusionConfig, rank: number): DiffusionWorkerInit {
  return {
    rank,
    modelDir: resolvePath(config.model),
    load: { modelClassName: config.modelClassName, device: config.device, intraOpNumThreads: config.intraOpNumThreads, intraOpSpinning: config.intraOpSpinning, tinyVae: config.tinyVae && resolvePath(config.tinyVae), previewDecoder: config.previewDecoder },
    workerExtension: config.workerExtension,
    batching: config.batching,
    maxBatchRows: config.maxBatchRows,
    maxCallMs: config.maxCallMs,
  };
}
