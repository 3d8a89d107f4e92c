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
  /** Median CPU time of one step (this process, all threads), ms: not inflated by other processes' load. */
  cpuMsPerCall: number;
  /** Rows per CPU-second relative to one row per call. */
  cpuGain: number;
}

export async function unetProfile(opts: { modelDir: string; threads: number; size: string; rows: number[]; iters?: number; warmup?: number; spinning?: boolean }): Promise<UnetProfileRow[]> {
  const iters = opts.iters ?? 8;
  const warmup = opts.warmup ?? 50;
  const [width, height] = opts.size.split("x").map(Number) as [number, number];
  const pipeline = await loadPipeline(opts.modelDir, { intraOpNumThreads: opts.threads, intraOpSpinning: opts.spinning });
  if (!isSteppable(pipeline)) throw new Error(`${pipeline.info.className} has no step-level interface to profile`);
  try {
    pipeline.maxBatchRows = Math.max(...opts.rows);
    const requests = opts.rows.map(
      (rows) => new OmniDiffusionRequest({ prompt: "a red circle on a blue background", width, height, numInferenceSteps: warmup + iters, guidanceScale: 1, numOutputsPerPrompt: rows, seed: 1 }),
    );
    const states = await pipeline.prepare(requests);
    // Warm-up rounds: the first calls at a new batch size pay for allocation, and the step's own JavaScript
    // (tensor packing, scheduler math) runs unoptimised until V8 has seen it often, as it has in a worker that
    // has served for a while. Rounds interleave the sizes so drift in machine load hits them alike.
    for (let i = 0; i < warmup; i++) for (const s of states) await pipeline.step([s]);
    const times = opts.rows.map(() => [] as number[]);
    const cpu = opts.rows.map(() => [] as number[]);
    for (let i = 0; i < iters; i++) {
      for (const [k, s] of states.entries()) {
        const c0 = process.cpuUsage();
        const t0 = performance.now();
        await pipeline.step([s]);
        times[k]!.push(performance.now() - t0);
        const c = process.cpuUsage(c0);
        cpu[k]!.push((c.user + c.system) / 1000);
      }
    }
    return withGains(opts.rows.map((rows, k) => ({ rows, msPerCall: median(times[k]!), cpuMsPerCall: median(cpu[k]!) })));
  } finally {
    await pipeline.release();
  }
}

/** Gains against the first row (the smallest batch) of a profile. */
function withGains(out: Omit<UnetProfileRow, "gain" | "cpuGain">[]): UnetProfileRow[] {
  const perRow1 = out[0]!.msPerCall / out[0]!.rows;
  const cpuPerRow1 = out[0]!.cpuMsPerCall / out[0]!.rows;
  return out.map((r) => ({ ...r, gain: perRow1 / (r.msPerCall / r.rows), cpuGain: cpuPerRow1 / (r.cpuMsPerCall / r.rows) }));
}

/**
 * The machine's best at each row count, whichever way onnxruntime's threads wait: the profile with idle
 * threads spinning and the one with them sleeping, the faster of the two per row count (spinning wins
 * small calls on an idle machine, sleeping big ones). A bound no setting of ours can beat.
 */
export async function bestUnetProfile(opts: {
  modelDir: string;
  threads: number;
  size: string;
  rows: number[];
  iters?: number;
  warmup?: number;
}): Promise<(UnetProfileRow & { spinningMs: number; sleepingMs: number })[]> {
  const spin = await unetProfile({ ...opts, spinning: true });
  const sleep = await unetProfile({ ...opts, spinning: false });
  const best = withGains(spin.map((a, i) => (sleep[i]!.msPerCall < a.msPerCall ? sleep[i]! : a)));
  return best.map((b, i) => ({ ...b, spinningMs: spin[i]!.msPerCall, sleepingMs: sleep[i]!.msPerCall }));
}

/** ms of one call at a fractional row count, linear between the profile's neighbouring rows (a mean rows/call). */
export function msAtRows(profile: UnetProfileRow[], rows: number): number {
  const below = [...profile].reverse().find((p) => p.rows <= rows) ?? profile[0]!;
  const above = profile.find((p) => p.rows >= rows) ?? profile[profile.length - 1]!;
  if (above.rows === below.rows) return below.msPerCall;
  return below.msPerCall + ((rows - below.rows) / (above.rows - below.rows)) * (above.msPerCall - below.msPerCall);
}
