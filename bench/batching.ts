/**
 * The three batching policies side by side on the shipped model (issue 6): starts `omni-diffusion serve`
 * once per policy, sends each the same Poisson workload (mixed 4/20/50-step requests, with and without
 * classifier-free guidance) from 16 concurrent clients, and prints per policy throughput, p50/p95 latency
 * overall and for the 4-step requests, mean UNet rows per call, and the ratios continuous/none and
 * continuous/request against the targets (issue 10: continuous/none ≥ 85 % of the physical bound, continuous ≥
 * request-level throughput, 4-step p95 ≤ 0.5× that of `request`). The physical bound is measured in-process in
 * the same run: rows/s of one UNet step at the continuous run's mean rows per call against rows/s at the rows
 * per call `none` ran, each size at the faster of onnxruntime's two thread-waiting modes, both printed (with
 * --unet-profile, the whole 1…32 curve too). `none` is not at 1 row per call: a guided request is 2 rows even
 * when it runs alone. The bound against 1 row is printed beside it, with the most a loop that wasted nothing
 * could reach of it; with --guidance 1 the two are the same. Then, unless --split off, it replays the workload through an in-process engine with real worker processes per --split policy and prints where the step time went
 * (UNet, scheduler math, text encode, VAE decode, previews, progress callbacks, the rest of the loop, outside
 * the loop), the per-request IPC/framing time (parent-observed minus worker time), and images per worker
 * CPU-second, which other load on a shared machine does not inflate (the bound in CPU terms beside it).
 *
 *   npx tsx bench/batching.ts [--policies continuous,request,none] [--rounds 2] [--concurrency 16] [--target-s 30]
 *     [--num-requests N] [--request-rate auto|R] [--steps 4,20,50] [--step-weights 5,3,2] [--guidance 1,4]
 *     [--size 32x32] [--workers 1] [--threads 2] [--spin-threads on|off] [--max-batch 16] [--max-batch-rows 32] [--seed 0] [--warmup 400]
 *     [--unet-profile] [--unet-rows 1,2,4,8,16,24,32] [--split continuous,request,none|off] [--json FILE]
 *
 * With --num-requests or --request-rate left out, a short calibration on the first server (two requests
 * alone) sizes the run: the `none` run takes about --target-s seconds, and requests arrive at 8× the rate
 * `none` can serve, so every policy runs saturated at --concurrency clients (throughput then measures the
 * server, not the arrivals). --rounds runs every policy that many times, in mirrored order (A B C, C B A, …),
 * and pools each policy's runs, so a machine whose speed drifts during the bench (this VM's moves by up to 2×
 * within minutes) hits each policy alike; the ratios are also printed round by round. The defaults take 4–6
 * minutes on 2 cores.
 */
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { BATCHING_POLICIES, type BatchingPolicy } from "../src/core/config.js";
import { DEFAULT_MODEL_DIR } from "../src/core/paths.js";
import { startCliServer, stopCliServer } from "./lib/cli-server.js";
import { describeMachine } from "./lib/machine.js";
import { makeRequests, percentile, runLoad, sendOne, type LoadOptions, type LoadRequest, type LoadResult } from "./lib/serve-load.js";
import { intFlag, intListFlag, table } from "./lib/stats.js";
import { bestUnetProfile, msAtRows } from "./lib/unet-profile.js";
import { loopSplit, splitRows, type LoopSplit } from "./lib/loop-split.js";

const { values: args } = parseArgs({
  options: {
    policies: { type: "string", default: BATCHING_POLICIES.join(",") },
    concurrency: { type: "string", default: "16" },
    "target-s": { type: "string", default: "30" },
    "num-requests": { type: "string" },
    "request-rate": { type: "string", default: "auto" },
    steps: { type: "string", default: "4,20,50" },
    "step-weights": { type: "string", default: "5,3,2" },
    guidance: { type: "string", default: "1,4" },
    size: { type: "string", default: "32x32" },
    workers: { type: "string", default: "1" },
    threads: { type: "string", default: "2" },
    "spin-threads": { type: "string" },
    "max-batch": { type: "string", default: "16" },
    "max-batch-rows": { type: "string", default: "32" },
    seed: { type: "string", default: "0" },
    rounds: { type: "string", default: "2" },
    warmup: { type: "string", default: "400" },
    "unet-profile": { type: "boolean", default: false },
    "unet-rows": { type: "string", default: "1,2,4,8,16,24,32" },
    split: { type: "string", default: "continuous,request,none" },
    json: { type: "string" },
    help: { type: "boolean", default: false },
  },
});
if (args.help) {
  console.log(`usage: tsx bench/batching.ts [--policies continuous,request,none] [--rounds 2] [--concurrency 16] [--target-s 30] [--num-requests N]
       [--request-rate auto|R] [--steps 4,20,50] [--step-weights 5,3,2] [--guidance 1,4] [--size 32x32] [--workers 1]
       [--threads 2] [--spin-threads on|off] [--max-batch 16] [--max-batch-rows 32] [--seed 0] [--warmup 400] [--unet-profile] [--unet-rows 1,2,4,8,16,24,32] [--split continuous,request,none|off] [--json FILE]`);
  process.exit(0);
}

const policies = args.policies!.split(",").map((p) => p.trim()) as BatchingPolicy[];
for (const p of policies) {
  if (!(BATCHING_POLICIES as readonly string[]).includes(p)) {
    console.error(`--policies: unknown policy "${p}" (use ${BATCHING_POLICIES.join(", ")})`);
    process.exit(2);
  }
}
const concurrency = intFlag("concurrency", args.concurrency, 1);
const targetS = intFlag("target-s", args["target-s"], 1);
const steps = intListFlag("steps", args.steps);
const weights = intListFlag("step-weights", args["step-weights"]);
const guidances = args.guidance!.split(",").map(Number);
const workers = intFlag("workers", args.workers, 1);
const threads = intFlag("threads", args.threads, 1);
const seed = intFlag("seed", args.seed, 0);
const rounds = intFlag("rounds", args.rounds, 1);
const warmupRequests = intFlag("warmup", args.warmup, 0);
const shortSteps = Math.min(...steps);
if (weights.length !== steps.length || guidances.some((g) => !Number.isFinite(g) || g < 0)) {
  console.error("--step-weights needs one weight per --steps entry, and --guidance non-negative numbers");
  process.exit(2);
}
const spin = args["spin-threads"];
if (spin !== undefined && spin !== "on" && spin !== "off") {
  console.error(`--spin-threads must be "on" or "off" (left out: each policy's default), got ${spin}`);
  process.exit(2);
}
const serverFlags = (policy: BatchingPolicy) => [
  "--workers", String(workers), "--threads", String(threads), "--batching", policy, ...(spin ? ["--spin-threads", spin] : []),
  "--max-batch", String(intFlag("max-batch", args["max-batch"], 1)), "--max-batch-rows", String(intFlag("max-batch-rows", args["max-batch-rows"], 1)),
  "--max-queue", "100000", "--max-steps", String(Math.max(150, ...steps)),
];

/** The workload: prompts and seeds from the shapes vocabulary; steps drawn by weight; guidance alternating at random. */
function workload(count: number): LoadRequest[] {
  const base = makeRequests(count, [args.size!], [1], 1, seed);
  let x = seed * 7919 + 17;
  const rnd = () => ((x = (x * 48271) % 2147483647) / 2147483647);
  const total = weights.reduce((a, b) => a + b, 0);
  return base.map((r) => {
    let u = rnd() * total;
    const s = steps.find((_, i) => (u -= weights[i]!) < 0) ?? steps[steps.length - 1]!;
    return { ...r, steps: s, guidance: guidances[Math.floor(rnd() * guidances.length)]! };
  });
}

const loadOpts = (baseUrl: string, requestRate: number): LoadOptions => ({ baseUrl, requestRate, concurrency, timeoutMs: 1_800_000, seed });

async function must(r: Promise<LoadResult>): Promise<LoadResult> {
  const res = await r;
  if (!res.ok) throw new Error(`request failed: ${res.error}`);
  return res;
}

/**
 * Warm-up: each guidance setting alone, then --warmup one-step requests from --concurrency clients, so
 * neither lazy initialisation nor the server's JavaScript before V8 has optimised it (a fresh server runs
 * its request path unoptimised for its first hundreds of requests, and on 2 cores that CPU comes out of the
 * UNet's) is measured.
 */
async function warmup(url: string): Promise<void> {
  const opts = loadOpts(url, Infinity);
  for (const g of guidances) await must(sendOne({ prompt: "warm-up", size: args.size!, steps: 2, n: 1, seed: 0, guidance: g }, opts));
  let next = 0;
  const client = async () => {
    for (let i = next++; i < warmupRequests; i = next++) await must(sendOne({ prompt: "warm-up", size: args.size!, steps: 1, n: 1, seed: i, guidance: guidances[i % guidances.length]! }, opts));
  };
  await Promise.all(Array.from({ length: concurrency }, client));
}

/** Mean service time of one request of the workload served alone, from a short and a long guided request. */
async function calibrate(url: string): Promise<number> {
  const opts = loadOpts(url, Infinity);
  const g = Math.max(...guidances);
  const time = async (s: number) => {
    const r = await must(sendOne({ prompt: "calibration", size: args.size!, steps: s, n: 1, seed: 1, guidance: g }, opts));
    return r.latencyMs;
  };
  const [t1, t2] = [await time(4), await time(24)];
  const perStep = Math.max(0.1, (t2 - t1) / 20);
  const fixed = Math.max(0, t1 - 4 * perStep);
  const meanSteps = steps.reduce((a, s, i) => a + s * weights[i]!, 0) / weights.reduce((a, b) => a + b, 0);
  return fixed + perStep * meanSteps; // guided per-step time for all: errs on the slow side
}

/** Sum and count of a histogram on /metrics. */
async function histogram(url: string, name: string): Promise<{ sum: number; count: number }> {
  const lines = (await (await fetch(`${url}/metrics`)).text()).split("\n");
  const get = (suffix: string) => Number(lines.find((l) => l.startsWith(`${name}_${suffix} `))?.split(" ")[1] ?? 0);
  return { sum: get("sum"), count: get("count") };
}

/** One policy's run, raw: what {@link summarize} pools over rounds. */
interface PolicyRun {
  policy: BatchingPolicy;
  durationS: number;
  images: number;
  /** Latency (ms) of every successful request, with its step count and its first step (ms, when reported). */
  ok: { latencyMs: number; steps: number; firstStepMs: number | undefined }[];
  failed: number;
  errors: (string | undefined)[];
  /** Deltas of the server's UNet histograms over the run: rows (sum, calls) and step seconds. */
  rowsSum: number;
  calls: number;
  stepSeconds: number;
}

interface PolicyResult {
  policy: BatchingPolicy;
  durationS: number;
  failed: number;
  imagesPerS: number;
  /** images/s of each round's run, in round order. */
  perRound: number[];
  p50: number;
  p95: number;
  byClass: Record<number, { p50: number; p95: number; firstStepP50: number; n: number }>;
  meanRows: number;
  meanStepMs: number;
  /** Share of the run the worker(s) spent inside UNet calls. */
  unetBusy: number;
  errors: (string | undefined)[];
}

/**
 * One policy's run on a fresh server. `plan` runs on the first server after its warm-up: it calibrates
 * when it must and fixes the workload and arrival rate that every later policy reuses.
 */
async function runPolicy(policy: BatchingPolicy, plan: (url: string) => Promise<{ requests: LoadRequest[]; rate: number }>): Promise<PolicyRun> {
  const { child, url } = await startCliServer(serverFlags(policy));
  try {
    await warmup(url);
    const { requests, rate } = await plan(url);
    const [rows0, step0] = await Promise.all([histogram(url, "omni_unet_batch_rows"), histogram(url, "omni_step_duration_seconds")]);
    const { results, durationS } = await runLoad(requests, loadOpts(url, rate));
    const [rows1, step1] = await Promise.all([histogram(url, "omni_unet_batch_rows"), histogram(url, "omni_step_duration_seconds")]);
    const ok = results.flatMap((r, i) => (r.ok ? [{ r, steps: requests[i]!.steps }] : []));
    return {
      policy,
      durationS,
      images: ok.reduce((a, { r }) => a + r.images, 0),
      ok: ok.map(({ r, steps }) => ({ latencyMs: r.latencyMs, steps, firstStepMs: typeof r.stages.first_step === "number" ? r.stages.first_step : undefined })),
      failed: results.length - ok.length,
      errors: [...new Set(results.filter((r) => !r.ok).map((r) => r.error))].slice(0, 3),
      rowsSum: rows1.sum - rows0.sum,
      calls: rows1.count - rows0.count,
      stepSeconds: step1.sum - step0.sum,
    };
  } finally {
    await stopCliServer(child);
  }
}

/** A policy's runs over every round, pooled: images over total time, percentiles over every request. */
function summarize(runs: PolicyRun[]): PolicyResult {
  const sum = (f: (r: PolicyRun) => number) => runs.reduce((a, r) => a + f(r), 0);
  const durationS = sum((r) => r.durationS);
  const calls = sum((r) => r.calls);
  const ok = runs.flatMap((r) => r.ok);
  const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
  const byClass: PolicyResult["byClass"] = {};
  for (const s of steps) {
    const cls = ok.filter((o) => o.steps === s);
    const lat = sorted(cls.map((o) => o.latencyMs));
    const first = sorted(cls.flatMap((o) => (o.firstStepMs === undefined ? [] : [o.firstStepMs])));
    byClass[s] = { p50: percentile(lat, 50), p95: percentile(lat, 95), firstStepP50: percentile(first, 50), n: cls.length };
  }
  const all = sorted(ok.map((o) => o.latencyMs));
  return {
    policy: runs[0]!.policy,
    durationS,
    failed: sum((r) => r.failed),
    errors: [...new Set(runs.flatMap((r) => r.errors))].slice(0, 3),
    imagesPerS: sum((r) => r.images) / durationS,
    perRound: runs.map((r) => r.images / r.durationS),
    p50: percentile(all, 50),
    p95: percentile(all, 95),
    byClass,
    meanRows: calls > 0 ? sum((r) => r.rowsSum) / calls : NaN,
    meanStepMs: calls > 0 ? (sum((r) => r.stepSeconds) / calls) * 1000 : NaN,
    unetBusy: sum((r) => r.stepSeconds) / (durationS * workers),
  };
}

console.log(describeMachine());
const rateArg = args["request-rate"]!;
const fixedRate = rateArg === "auto" ? null : rateArg === "inf" ? Infinity : Number(rateArg);
if (fixedRate !== null && !(fixedRate > 0)) {
  console.error(`--request-rate must be "auto", "inf" or a number > 0, got ${rateArg}`);
  process.exit(2);
}
const fixedCount = args["num-requests"] ? intFlag("num-requests", args["num-requests"], 1) : null;
interface Plan {
  requests: LoadRequest[];
  rate: number;
  calibratedMs: number | null;
}
const planned: { value: Plan | null } = { value: null };
const plan = async (url: string): Promise<Plan> => {
  if (planned.value) return planned.value;
  const calibratedMs = fixedCount === null || fixedRate === null ? await calibrate(url) : null;
  // Sized so `none` (one request at a time per worker) runs about --target-s seconds; arrivals at 8× its
  // capacity keep every policy saturated at --concurrency clients.
  const count = fixedCount ?? Math.min(600, Math.max(30, Math.round((targetS * 1000 * workers) / calibratedMs!)));
  const rate = fixedRate ?? (8 * workers * 1000) / calibratedMs!;
  const requests = workload(count);
  const mix = steps.map((s) => `${s} steps × ${requests.filter((r) => r.steps === s).length}`).join(", ");
  console.log(
    `workload: ${count} requests (${mix}; guidance ${guidances.join("/")}), size ${args.size}, ${concurrency} concurrent clients, ` +
      `Poisson arrivals at ${Number.isFinite(rate) ? rate.toFixed(2) : "inf"} req/s; ${workers} worker(s) × ${threads} thread(s), ` +
      `--max-batch ${args["max-batch"]}, --max-batch-rows ${args["max-batch-rows"]}` +
      (calibratedMs !== null ? `; calibrated service time alone ${calibratedMs.toFixed(0)} ms/request` : "") +
      "\n",
  );
  planned.value = { requests, rate, calibratedMs };
  return planned.value;
};

// Rounds run the policies in mirrored order (A B C, then C B A, ...), so a machine that slows down or speeds up
// over the bench hits each policy alike; each policy's figures pool its runs.
const runs = new Map<BatchingPolicy, PolicyRun[]>(policies.map((p) => [p, []]));
for (let k = 0; k < rounds; k++) {
  for (const policy of k % 2 === 0 ? policies : [...policies].reverse()) {
    const r = await runPolicy(policy, plan);
    const failed = r.failed ? `, ${r.failed} FAILED: ${r.errors.join(" | ")}` : "";
    console.log(`round ${k + 1}/${rounds} ${policy}: ${(r.images / r.durationS).toFixed(2)} images/s over ${r.durationS.toFixed(1)} s${failed}`);
    runs.get(policy)!.push(r);
  }
}
const results: PolicyResult[] = policies.map((p) => summarize(runs.get(p)!));

const ms = (v: number) => (Number.isFinite(v) ? v.toFixed(0) : "-");
const long = steps.filter((s) => s !== shortSteps);
console.log();
console.log(
  table([
    ["policy", "images/s", "p50 ms", "p95 ms", `${shortSteps}-step p50`, `${shortSteps}-step p95`, ...long.map((s) => `${s}-step p95`), `${shortSteps}-step 1st step p50`, "rows/UNet call", "ms/UNet call", "UNet busy"],
    ...results.map((r) => [
      r.policy,
      r.imagesPerS.toFixed(2),
      ms(r.p50),
      ms(r.p95),
      ms(r.byClass[shortSteps]!.p50),
      ms(r.byClass[shortSteps]!.p95),
      ...long.map((s) => ms(r.byClass[s]!.p95)),
      ms(r.byClass[shortSteps]!.firstStepP50),
      Number.isFinite(r.meanRows) ? r.meanRows.toFixed(1) : "-",
      Number.isFinite(r.meanStepMs) ? r.meanStepMs.toFixed(1) : "-",
      `${(100 * r.unetBusy).toFixed(0)}%`,
    ]),
  ]),
);

const get = (p: BatchingPolicy) => results.find((r) => r.policy === p);
const [cont, req, none] = [get("continuous"), get("request"), get("none")];

// The physical bound: UNet rows/s at the loop's mean rows per call against 1 row, measured here, now; and against
// the rows per call `none` itself ran (guided requests are 2 rows even one at a time).
const meanRows = cont && Number.isFinite(cont.meanRows) ? Math.max(1, Math.round(cont.meanRows)) : null;
const noneRows = none && Number.isFinite(none.meanRows) ? none.meanRows : null;
const profileRows = [
  ...new Set([1, ...(args["unet-profile"] ? intListFlag("unet-rows", args["unet-rows"]) : []), ...(meanRows ? [meanRows] : []), ...(noneRows ? [Math.floor(noneRows), Math.ceil(noneRows)] : [])]),
].sort((a, b) => a - b);
let profile: Awaited<ReturnType<typeof bestUnetProfile>> | null = null;
if (profileRows.length > 1) {
  console.log(`\nOne UNet step (pipeline.step, ${args.size}, no guidance) vs rows, in-process with ${threads} thread(s), the faster of idle threads spinning or sleeping per size:`);
  profile = await bestUnetProfile({ modelDir: DEFAULT_MODEL_DIR, threads, size: args.size!, rows: profileRows, iters: 16 });
  console.log(
    table([
      ["rows", "ms/call", "spinning", "sleeping", "ms/row", "rows/s", "gain vs 1 row", "CPU ms/row", "CPU gain vs 1 row"],
      ...profile.map((p) => [
        p.rows,
        p.msPerCall.toFixed(2),
        p.spinningMs.toFixed(2),
        p.sleepingMs.toFixed(2),
        (p.msPerCall / p.rows).toFixed(2),
        ((1000 * p.rows) / p.msPerCall).toFixed(0),
        `${p.gain.toFixed(2)}x`,
        (p.cpuMsPerCall / p.rows).toFixed(2),
        `${p.cpuGain.toFixed(2)}x`,
      ]),
    ]),
  );
}
const cpuBound = meanRows && profile ? profile.find((p) => p.rows === meanRows)!.cpuGain : null;
const bound = meanRows && profile ? profile.find((p) => p.rows === meanRows)!.gain : null;
const matchedBound = meanRows && noneRows && profile ? meanRows / msAtRows(profile, meanRows) / (noneRows / msAtRows(profile, noneRows)) : null;

console.log();
if (cont && none) {
  const x = cont.imagesPerS / none.imagesPerS;
  const each = cont.perRound.map((c, k) => (c / none.perRound[k]!).toFixed(2)).join(", ");
  console.log(`throughput continuous/none:    ${x.toFixed(2)}x${rounds > 1 ? `  (round by round: ${each})` : ""}`);
  // The target is against the bound for this workload: `none` runs a guided request as 2 rows even alone, so it
  // already has part of batching's gain, and a bound against 1 row would rate continuous batching by how much
  // `none` wastes. Against 1 row is printed too; with --guidance 1 (`none` at 1 row/call) the two are the same.
  if (matchedBound) {
    const eff = x / matchedBound;
    console.log(
      `physical bound, this workload: ${matchedBound.toFixed(2)}x  (UNet rows/s at ${meanRows} rows/call, the loop's mean, vs at ${noneRows!.toFixed(2)}, none's own)\n` +
        `continuous efficiency vs bound: ${(100 * eff).toFixed(0)}%  (target >= 85%: ${eff >= 0.85 ? "met" : "MISSED"})`,
    );
  }
  if (bound) {
    const ceiling = matchedBound ? matchedBound / bound : 1;
    console.log(
      `against 1 row/call instead:     ${bound.toFixed(2)}x bound, efficiency ${((100 * x) / bound).toFixed(0)}%` +
        (ceiling < 0.995 ? `  (none's ${noneRows!.toFixed(2)} rows/call already gain ${(1 / ceiling).toFixed(2)}x over 1 row: were neither policy to waste any time, this would read ${(100 * ceiling).toFixed(0)}%)` : ""),
    );
  }
}
if (cont && req) {
  const r = cont.imagesPerS / req.imagesPerS;
  const each = cont.perRound.map((c, k) => (c / req.perRound[k]!).toFixed(2)).join(", ");
  console.log(`throughput continuous/request: ${r.toFixed(2)}x  (target >= 1x: ${r >= 1 ? "met" : "MISSED"})${rounds > 1 ? `  (round by round: ${each})` : ""}`);
  const y = cont.byClass[shortSteps]!.p95 / req.byClass[shortSteps]!.p95;
  console.log(`${shortSteps}-step p95 continuous/request: ${y.toFixed(2)}x  (target <= 0.5x: ${y <= 0.5 ? "met" : "MISSED"})`);
}

const splitPolicies = args.split === "off" ? [] : (args.split!.split(",").map((p) => p.trim()) as BatchingPolicy[]);
const splits: LoopSplit[] = [];
for (const policy of splitPolicies) {
  if (!(BATCHING_POLICIES as readonly string[]).includes(policy) || !planned.value) continue;
  const s = await loopSplit({
    policy,
    requests: planned.value.requests,
    concurrency,
    workers,
    threads,
    ...(spin ? { spinning: spin === "on" } : {}),
    maxBatch: intFlag("max-batch", args["max-batch"], 1),
    maxBatchRows: intFlag("max-batch-rows", args["max-batch-rows"], 1),
  });
  splits.push(s);
  const l = s.loop;
  console.log(
    `\nStep-time split, ${policy} (in-process engine + ${workers} worker process(es), same workload, ${concurrency} clients, no HTTP): ` +
      `${s.requests} requests in ${(s.wallMs / 1000).toFixed(1)} s; ${l.unetCalls} UNet calls, ${(l.unetRows / Math.max(1, l.unetCalls)).toFixed(1)} rows/call, ` +
      `${(l.busyMs / Math.max(1, l.iterations)).toFixed(1)} ms/iteration`,
  );
  console.log(table(splitRows(s, workers)));
  console.log(`IPC/framing per request (parent-observed minus the worker's own time): ${s.ipcMsPerRequest.toFixed(1)} ms (worker's own: ${s.workerMsPerRequest.toFixed(0)} ms)`);
}
if (splits.length) {
  // CPU time is what a loaded, shared machine does not inflate: images per worker CPU-second compares policies fairly there.
  const perCpuS = (s: LoopSplit) => s.images / (s.workerCpuMs / 1000);
  console.log(`\nImages per worker CPU-second (in-process replays; robust to other load on the machine):`);
  console.log(
    table([
      ["policy", "images/s (wall)", "images per worker CPU-s", "rows/UNet call", "worker CPU use", "parent CPU ms/image"],
      ...splits.map((s) => [
        s.policy,
        (s.images / (s.wallMs / 1000)).toFixed(2),
        perCpuS(s).toFixed(2),
        (s.loop.unetRows / Math.max(1, s.loop.unetCalls)).toFixed(1),
        `${((100 * s.workerCpuMs) / s.wallMs).toFixed(0)}%`,
        (s.parentCpuMs / Math.max(1, s.images)).toFixed(1),
      ]),
    ]),
  );
  const [c, n, r] = (["continuous", "none", "request"] as const).map((p) => splits.find((s) => s.policy === p));
  if (c && n) {
    const x = perCpuS(c) / perCpuS(n);
    console.log(`per CPU-second continuous/none: ${x.toFixed(2)}x` + (cpuBound ? `; CPU bound at ${meanRows} rows ${cpuBound.toFixed(2)}x: ${(100 * x / cpuBound).toFixed(0)}% of it` : ""));
  }
  if (c && r) console.log(`per CPU-second continuous/request: ${(perCpuS(c) / perCpuS(r)).toFixed(2)}x`);
}
if (args.json) writeFileSync(args.json, JSON.stringify({ args, count: planned.value?.requests.length, rate: planned.value?.rate, calibratedMs: planned.value?.calibratedMs, results, profile, bound, matchedBound, splits }, null, 2));
