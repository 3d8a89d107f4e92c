/**
 * What the queue executor costs and what a second worker buys, on the shipped model, over loopback, with a
 * redis-server started here (it must be installed: apt-get install -y redis-server).
 *
 *   npx tsx bench/fleet.ts [--requests 12] [--size 32] [--steps 8] [--load 24] [--concurrency 4] [--json FILE]
 *
 * 1. Overhead per image: the same requests one at a time through a local engine (uniproc executor, one
 *    onnxruntime thread) and through the `queue` executor to one `omni-diffusion worker --queue` running the
 *    same engine, taking turns request by request; the median of per-request ratios (target ≤ 1.10).
 * 2. Enqueue-to-start latency: the workers' `omni_queue_enqueue_to_start_seconds` histogram (mean, and the
 *    share under 10 ms / 50 ms), over every job of the run.
 * 3. Throughput (images/s) of `--load` concurrent requests with one worker, then two. Every process shares
 *    this machine's cores, so two workers only help as far as there are cores to spare (say how many there
 *    are when quoting the figure).
 */
import { writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { parseArgs } from "node:util";
import { DiffusionEngine, OmniDiffusionRequest } from "../src/index.js";
import { describeMachine } from "./lib/machine.js";
import { intFlag, median } from "./lib/stats.js";
import { QueueWorkerChild, TestRedis, redisMissing, uniqueQueue } from "../test/fleet/helpers.js";

const { values: args } = parseArgs({
  options: {
    requests: { type: "string", default: "12" },
    size: { type: "string", default: "32" },
    steps: { type: "string", default: "8" },
    load: { type: "string", default: "24" },
    concurrency: { type: "string", default: "4" },
    json: { type: "string" },
  },
});
const [nRequests, size, steps, load, concurrency] = (["requests", "size", "steps", "load", "concurrency"] as const).map((n) => intFlag(n, args[n], 1)) as [number, number, number, number, number];
const missing = redisMissing();
if (missing) {
  console.error(`bench/fleet.ts: ${missing}`);
  process.exit(2);
}

const request = (tag: string, i: number) => new OmniDiffusionRequest({ prompt: `a red circle on a blue background`, width: size, height: size, numInferenceSteps: steps, seed: i, requestId: `${tag}-${i}` });
async function timed(engine: DiffusionEngine, r: OmniDiffusionRequest): Promise<number> {
  const t0 = performance.now();
  const out = await engine.generate(r);
  if (out.images.length !== 1) throw new Error(`request ${r.requestId}: ${out.images.length} images`);
  return performance.now() - t0;
}
async function throughput(engine: DiffusionEngine, tag: string): Promise<number> {
  const t0 = performance.now();
  await Promise.all(Array.from({ length: load }, (_, i) => engine.generate(request(tag, i))));
  return load / ((performance.now() - t0) / 1000);
}
/** Mean and buckets of the enqueue-to-start histogram a worker exports. */
async function startLatency(worker: QueueWorkerChild): Promise<{ count: number; sum: number; le10ms: number; le50ms: number }> {
  const url = /metrics=(\S+)/.exec(worker.readyLine)![1]!;
  const text = await (await fetch(`${url}/metrics`)).text();
  const val = (re: RegExp) => Number(re.exec(text)?.[1] ?? 0);
  return {
    count: val(/^omni_queue_enqueue_to_start_seconds_count (\S+)/m),
    sum: val(/^omni_queue_enqueue_to_start_seconds_sum (\S+)/m),
    le10ms: val(/^omni_queue_enqueue_to_start_seconds_bucket\{le="0.01"\} (\S+)/m),
    le50ms: val(/^omni_queue_enqueue_to_start_seconds_bucket\{le="0.05"\} (\S+)/m),
  };
}

const redis = await TestRedis.start();
const queue = uniqueQueue("bench");
const workerArgs = ["--concurrency", String(concurrency), "--metrics-port", "0"];
const workers: QueueWorkerChild[] = [];
const engines: DiffusionEngine[] = [];
try {
  workers.push(await QueueWorkerChild.start(redis.url, queue, workerArgs));
  const localEngine = await DiffusionEngine.create({ executorClass: "uniproc", intraOpNumThreads: 1, allowNonNativeSizes: true });
  const queued = await DiffusionEngine.create({ executorClass: "queue", executorOptions: { url: redis.url, queue }, allowNonNativeSizes: true });
  engines.push(localEngine, queued);
  // Warm both paths (model load, first-call costs) before measuring.
  await timed(localEngine, request("warm-local", 0));
  await timed(queued, request("warm-queue", 0));

  const ratios: number[] = [];
  const localMs: number[] = [];
  const queueMs: number[] = [];
  for (let i = 0; i < nRequests; i++) {
    const a = await timed(localEngine, request("local", i));
    const b = await timed(queued, request("queue", i));
    localMs.push(a);
    queueMs.push(b);
    ratios.push(b / a);
  }
  const one = await throughput(queued, "one");
  workers.push(await QueueWorkerChild.start(redis.url, queue, workerArgs));
  await throughput(queued, "warm-two"); // the second worker's first jobs load its sessions
  const two = await throughput(queued, "two");
  const lat = (await Promise.all(workers.map(startLatency))).reduce((a, b) => ({ count: a.count + b.count, sum: a.sum + b.sum, le10ms: a.le10ms + b.le10ms, le50ms: a.le50ms + b.le50ms }));

  const result = {
    cores: availableParallelism(),
    size,
    steps,
    perImageMs: { local: median(localMs), queue: median(queueMs) },
    overheadRatioMedian: median(ratios),
    enqueueToStart: { jobs: lat.count, meanMs: (lat.sum / lat.count) * 1000, under10ms: lat.le10ms / lat.count, under50ms: lat.le50ms / lat.count },
    throughputImagesPerS: { oneWorker: one, twoWorkers: two, load, concurrencyPerWorker: concurrency },
  };
  console.log(describeMachine());
  console.log(`cores: ${result.cores} (shared by redis, the engine and every worker)`);
  console.log(`per image (${size}x${size}, ${steps} steps, median): local ${result.perImageMs.local.toFixed(1)} ms, queue ${result.perImageMs.queue.toFixed(1)} ms, ratio ${result.overheadRatioMedian.toFixed(3)} (target <= 1.10)`);
  console.log(`enqueue to start: mean ${result.enqueueToStart.meanMs.toFixed(1)} ms over ${lat.count} jobs; ${(result.enqueueToStart.under10ms * 100).toFixed(0)}% under 10 ms, ${(result.enqueueToStart.under50ms * 100).toFixed(0)}% under 50 ms`);
  console.log(`throughput (${load} concurrent requests): 1 worker ${one.toFixed(1)} images/s, 2 workers ${two.toFixed(1)} images/s`);
  if (args.json) writeFileSync(args.json, JSON.stringify(result, null, 2));
} finally {
  await Promise.allSettled(engines.map((e) => e.close()));
  await Promise.allSettled(workers.map((w) => w.stop()));
  await redis.close();
}
