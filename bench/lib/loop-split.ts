/**
 * Where a worker's step time goes under load: runs a workload through an in-process engine with real worker
 * processes (the multi-process executor, as `serve` uses it), reads each rank's step-loop counters
 * (`getStats().loop`) before and after, and measures per request the time the parent saw beyond what the
 * worker spent on it (IPC and framing both ways, plus the parent's decoding of the reply).
 */
import { readFileSync } from "node:fs";
import type { BatchingPolicy } from "../../src/core/config.js";
import { DiffusionEngine } from "../../src/engine/engine.js";
import type { StepLoopStats } from "../../src/pipelines/step-loop.js";
import type { WorkerStats } from "../../src/protocol/worker-stats.js";
import type { LoadRequest } from "./serve-load.js";

export interface LoopSplit {
  policy: BatchingPolicy;
  wallMs: number;
  requests: number;
  /** Summed over ranks. */
  loop: StepLoopStats;
  /** Mean per request: parent-observed time minus the engine's queue and the worker's own time, ms. */
  ipcMsPerRequest: number;
  /** Mean per request: the worker's own time (its queue, encode, denoise, decode), ms. */
  workerMsPerRequest: number;
  images: number;
  /** CPU time the worker processes used over the run (all threads), ms: unlike wall time, not inflated by other load. */
  workerCpuMs: number;
  /** CPU time this (parent) process used over the run: the engine, the executor's IPC, progress handling. */
  parentCpuMs: number;
}

const ZERO: StepLoopStats = { iterations: 0, unetCalls: 0, unetRows: 0, unetMs: 0, stepMs: 0, encodeTextMs: 0, decodeMs: 0, previewMs: 0, progressMs: 0, busyMs: 0 };

/**
 * CPU time of a worker process, ms: from /proc on Linux (so older workers without `cpuMs` measure too), else
 * what its getStats reports.
 */
function workerCpuMs(s: WorkerStats): number {
  try {
    // Fields after the command's closing paren: state is field 3, utime and stime fields 14 and 15 (clock ticks, 100/s).
    const f = readFileSync(`/proc/${s.pid}/stat`, "utf8").split(")").pop()!.trim().split(" ");
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
  } catch {
    return s.cpuMs ?? 0;
  }
}

function sum(stats: WorkerStats[]): StepLoopStats {
  const out = { ...ZERO };
  for (const s of stats) for (const k of Object.keys(out) as (keyof StepLoopStats)[]) out[k] += s.loop?.[k] ?? 0;
  return out;
}

export async function loopSplit(opts: {
  policy: BatchingPolicy;
  requests: LoadRequest[];
  concurrency: number;
  workers: number;
  threads: number;
  /** `intraOpSpinning`; absent: the policy's default. */
  spinning?: boolean;
  maxBatch: number;
  maxBatchRows: number;
}): Promise<LoopSplit> {
  const engine = await DiffusionEngine.create({
    numGpus: opts.workers,
    intraOpNumThreads: opts.threads,
    ...(opts.spinning === undefined ? {} : { intraOpSpinning: opts.spinning }),
    batching: opts.policy,
    maxBatchRows: opts.maxBatchRows,
    limits: { maxBatchSize: opts.maxBatch, maxQueue: 100_000, maxSteps: Math.max(150, ...opts.requests.map((r) => r.steps)) },
  });
  try {
    const gen = (r: LoadRequest) => {
      const [width, height] = r.size.split("x").map(Number) as [number, number];
      return engine.generate({ prompt: r.prompt, width, height, numInferenceSteps: r.steps, numOutputsPerPrompt: r.n, seed: r.seed, guidanceScale: r.guidance ?? null });
    };
    await Promise.all(opts.requests.slice(0, Math.min(8, opts.concurrency)).map((r) => gen({ ...r, steps: 2 })));
    const stats = async () => (await engine.collectiveRpc("getStats")) as WorkerStats[];
    const before0 = await stats();
    const before = sum(before0);
    // Read now: /proc gives the CPU time as of the read, not as of the getStats reply.
    const cpuBefore = before0.reduce((a, s) => a + workerCpuMs(s), 0);
    let images = 0;
    let next = 0;
    let ipc = 0;
    let worker = 0;
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    await Promise.all(
      Array.from({ length: opts.concurrency }, async () => {
        while (next < opts.requests.length) {
          const r = opts.requests[next++]!;
          const t = performance.now();
          const out = await gen(r);
          const parentMs = performance.now() - t;
          if (out.error) throw out.error;
          images += out.images.length;
          const m = out.metrics;
          const engineQueue = (m.queueMs ?? 0) - (m.workerQueueMs ?? 0);
          worker += m.totalMs ?? 0;
          ipc += parentMs - engineQueue - (m.totalMs ?? 0);
        }
      }),
    );
    const wallMs = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    const after0 = await stats();
    const after = sum(after0);
    const cpuMs = after0.reduce((a, s) => a + workerCpuMs(s), 0) - cpuBefore;
    const loop = { ...ZERO };
    for (const k of Object.keys(loop) as (keyof StepLoopStats)[]) loop[k] = after[k] - before[k];
    const n = opts.requests.length;
    return { policy: opts.policy, wallMs, requests: n, loop, ipcMsPerRequest: ipc / n, workerMsPerRequest: worker / n, images, workerCpuMs: cpuMs, parentCpuMs: (cpu.user + cpu.system) / 1000 };
  } finally {
    await engine.close();
  }
}

/** The split as table rows: part, total ms, share of the wall time (per rank), ms per UNet call. */
export function splitRows(s: LoopSplit, workers: number): string[][] {
  const l = s.loop;
  const wall = s.wallMs * workers;
  const parts: [string, number][] = [
    ["UNet (session run)", l.unetMs],
    ["scheduler math + tensor packing", l.stepMs - l.unetMs],
    ["text encode (joining requests)", l.encodeTextMs],
    ["VAE decode (leaving requests)", l.decodeMs],
    ["preview decodes", l.previewMs],
    ["progress callbacks (IPC send)", l.progressMs],
    ["loop bookkeeping", l.busyMs - l.stepMs - l.encodeTextMs - l.decodeMs - l.previewMs - l.progressMs],
    ["outside the loop (worker IPC handling, idle)", wall - l.busyMs],
  ];
  const perCall = (v: number) => (l.unetCalls ? (v / l.unetCalls).toFixed(2) : "-");
  return [
    ["part", "ms", "% of wall", "ms per UNet call"],
    ...parts.map(([name, v]) => [name, v.toFixed(0), `${((100 * v) / wall).toFixed(1)}%`, perCall(v)]),
  ];
}
