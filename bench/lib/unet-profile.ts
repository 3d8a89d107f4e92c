/**
 * Per-call UNet latency against batch rows, measured through the pipeline's own `step` (tensor packing,
 * one UNet call, one scheduler step per image): what continuous batching pays per denoising step, and so
 * the most it can gain over running requests one at a time on this machine.
 */
import { OmniDiffusionRequest } from "../../src/core/request.js";
import { loadPipeline } from "../../src/pipelines/load.js";
import { isSteppable } from "../../src/pipelines/types.js";
import { median } from "./stats.js";

export interface UnetProfileRow {
  rows: number;
  /** Median wall-clock time of one step over `rows` rows, ms. */
  msPerCall: number;
  /** Rows per second relative to one row per call. */
  gain: number;
}

export async function unetProfile(opts: { modelDir: string; threads: number; size: string; rows: number[]; iters?: number }): Promise<UnetProfileRow[]> {
  const iters = opts.iters ?? 8;
  const [width, height] = opts.size.split("x").map(Number) as [number, number];
  const pipeline = await loadPipeline(opts.modelDir, { intraOpNumThreads: opts.threads });
  if (!isSteppable(pipeline)) throw new Error(`${pipeline.info.className} has no step-level interface to profile`);
  try {
    pipeline.maxBatchRows = Math.max(...opts.rows);
    const out: { rows: number; msPerCall: number }[] = [];
    for (const rows of opts.rows) {
      const request = new OmniDiffusionRequest({ prompt: "a red circle on a blue background", width, height, numInferenceSteps: iters + 2, guidanceScale: 1, numOutputsPerPrompt: rows, seed: 1 });
      const [state] = await pipeline.prepare([request]);
      for (let i = 0; i < 2; i++) await pipeline.step([state!]); // first calls at a new batch size pay for allocation
      const times: number[] = [];
      for (let i = 0; i < iters; i++) {
        const t0 = performance.now();
        await pipeline.step([state!]);
        times.push(performance.now() - t0);
      }
      out.push({ rows, msPerCall: median(times) });
    }
    const perRow1 = out[0]!.msPerCall / out[0]!.rows;
    return out.map((r) => ({ ...r, gain: perRow1 / (r.msPerCall / r.rows) }));
  } finally {
    await pipeline.release();
  }
}
