import { totalmem } from "node:os";
import { resolve as resolvePath } from "node:path";
import { memoryBudgetBytes, RUNTIME_BYTES } from "../../core/memory-estimate.js";
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
    load: { modelClassName: config.modelClassName, device: config.device, intraOpNumThreads: config.intraOpNumThreads, intraOpSpinning: config.intraOpSpinning, tinyVae: config.tinyVae && resolvePath(config.tinyVae), previewDecoder: config.previewDecoder,
      // The workers of one executor share this machine: each may use its part of it.
      memoryBudgetBytes: memoryBudgetBytes(totalmem(), config.numGpus),
      memory: {
        ...(config.cpuMemArena === undefined ? {} : { cpuMemArena: config.cpuMemArena }),
        ...(config.attentionSlices === undefined ? {} : { attentionSlices: config.attentionSlices }),
      },
    },
    workerExtension: config.workerExtension,
    batching: config.batching,
    maxBatchRows: config.maxBatchRows,
    maxCallMs: config.maxCallMs,
    models: config.models,
    defaultModel: config.defaultModel,
    maxLoadedModels: config.maxLoadedModels,
    // The loaded models of each worker share its part of the machine (less the runtime they share), unless set.
    maxModelMemory: config.maxModelMemory ?? Math.max(0, memoryBudgetBytes(totalmem(), config.numGpus) - RUNTIME_BYTES),
    ...(config.lorasDir ? { lorasDir: resolvePath(config.lorasDir) } : {}),
  };
}
