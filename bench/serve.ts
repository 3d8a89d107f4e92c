/**
 * Serving benchmark for the OpenAI images API, modelled on vLLM-Omni's `diffusion_benchmark_serving.py`.
 *
 * Against any server (this one, vLLM-Omni, anything speaking POST /v1/images/generations):
 *   npx tsx bench/serve.ts --base-url http://127.0.0.1:8000 --num-prompts 50 --concurrency 16 \
 *     --request-rate inf --sizes 32x32 --steps 2,4,8
 *
 * The default size, 32x32, is the shipped model's only one (other sizes are a 400 unless the server runs
 * with --allow-non-native-sizes); against another model pass its sizes, e.g. --sizes 512x512,768x768.
 *
 * Side by side on the shipped model: starts `omni-diffusion serve --batching request` twice (--max-batch 1,
 * then batching), runs the same load against each and prints the throughput ratio (bench/batching.ts
 * compares the three batching policies):
 *   npx tsx bench/serve.ts --compare-batching --max-batch 8 --num-prompts 48 --concurrency 16
 *
 * Reports throughput (images/s, req/s), latency mean/p50/p95/p99, failures, and the server-side stage
 * durations each response carries in its Server-Timing header (queue, encode_text, denoise, decode, ...).
 */
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { startCliServer, stopCliServer } from "./lib/cli-server.js";
import { formatSummary, makeRequests, runLoad, sendOne, summarise, type LoadOptions, type LoadSummary } from "./lib/serve-load.js";

const { values: args } = parseArgs({
  options: {
    "base-url": { type: "string" },
    "api-key": { type: "string" },
    model: { type: "string" },
    "num-prompts": { type: "string", default: "50" },
    concurrency: { type: "string", default: "16" },
    "request-rate": { type: "string", default: "inf" },
    sizes: { type: "string", default: "32x32" },
    steps: { type: "string", default: "2,4,8" },
    n: { type: "string", default: "1" },
    seed: { type: "string", default: "0" },
    warmup: { type: "string" },
    timeout: { type: "string", default: "600000" },
    json: { type: "string" },
    "compare-batching": { type: "boolean", default: false },
    "max-batch": { type: "string", default: "8" },
    workers: { type: "string", default: "1" },
    threads: { type: "string" },
    help: { type: "boolean", default: false },
  },
});

if (args.help || (!args["base-url"] && !args["compare-batching"])) {
  console.log(`usage: tsx bench/serve.ts (--base-url URL | --compare-batching [--max-batch 8] [--workers 1] [--threads N])
       [--num-prompts 50] [--concurrency 16] [--request-rate inf|R] [--sizes 32x32] [--steps 2,4,8]
       [--n 1] [--seed 0] [--warmup K] [--api-key KEY] [--model ID] [--timeout MS] [--json FILE]`);
  process.exit(args.help ? 0 : 2);
}

const int = (name: keyof typeof args, min: number): number => {
  const v = Number(args[name]);
  if (!Number.isInteger(v) || v < min) {
    console.error(`--${name} must be an integer >= ${min}, got ${String(args[name])}`);
    process.exit(2);
  }
  return v;
};
const numPrompts = int("num-prompts", 1);
const sizes = args.sizes!.split(",").map((s) => s.trim());
const steps = args.steps!.split(",").map(Number);
const requestRate = args["request-rate"] === "inf" ? Infinity : Number(args["request-rate"]);
const requests = makeRequests(numPrompts, sizes, steps, int("n", 1), int("seed", 0));
const load = (baseUrl: string): LoadOptions => ({
  baseUrl,
  apiKey: args["api-key"],
  model: args.model,
  requestRate,
  concurrency: int("concurrency", 1),
  timeoutMs: int("timeout", 1),
  seed: int("seed", 0),
});

/** One request per size × step combination (or --warmup K), so lazy initialisation is not measured. */
async function warmup(opts: LoadOptions): Promise<void> {
  const combos = sizes.flatMap((size) => steps.map((s) => ({ size, steps: s })));
  const k = args.warmup !== undefined ? int("warmup", 0) : combos.length;
  for (let i = 0; i < k; i++) {
    const c = combos[i % combos.length]!;
    const r = await sendOne({ prompt: "warm-up", size: c.size, steps: c.steps, n: 1, seed: i }, opts);
    if (!r.ok) throw new Error(`warm-up request failed: ${r.error}`);
  }
}

/** The batch-size histogram's sum and count from /metrics (omni-diffusion only; null elsewhere). */
async function batchCounters(opts: LoadOptions): Promise<{ sum: number; count: number } | null> {
  try {
    const res = await fetch(`${opts.baseUrl}/metrics`, {
      headers: opts.apiKey ? { authorization: `Bearer ${opts.apiKey}` } : {},
      signal: AbortSignal.timeout(10_000),
    });
    const lines = (await res.text()).split("\n");
    const get = (name: string) => Number(lines.find((l) => l.startsWith(`${name} `))?.split(" ")[1]);
    const sum = get("omni_batch_size_sum");
    const count = get("omni_batch_size_count");
    return Number.isFinite(sum) && Number.isFinite(count) ? { sum, count } : null;
  } catch {
    return null;
  }
}

async function bench(title: string, baseUrl: string): Promise<LoadSummary & { meanBatch: number | null }> {
  const opts = load(baseUrl);
  await warmup(opts);
  const before = await batchCounters(opts);
  const { results, durationS } = await runLoad(requests, opts);
  const after = await batchCounters(opts);
  const batches = before && after ? after.count - before.count : 0;
  const summary = { ...summarise(results, durationS), meanBatch: before && after && batches > 0 ? (after.sum - before.sum) / batches : null };
  console.log(formatSummary(title, summary));
  if (summary.meanBatch !== null) console.log(`${"Server mean batch size (requests):".padEnd(40)}${summary.meanBatch.toFixed(2)}`);
  return summary;
}

/** Starts `omni-diffusion serve` with request-level batching capped at `maxBatch` images. */
function startBatchServer(maxBatch: number) {
  const flags = ["--workers", String(int("workers", 1)), "--batching", "request", "--max-batch", String(maxBatch), "--max-queue", "100000"];
  if (args.threads) flags.push("--threads", String(int("threads", 1)));
  return startCliServer(flags);
}

const header = `${numPrompts} prompts, sizes ${sizes.join("/")}, steps ${steps.join("/")}, concurrency ${args.concurrency}, rate ${args["request-rate"]}/s`;
const out: Record<string, unknown> = { args, header };
if (args["compare-batching"]) {
  const maxBatch = int("max-batch", 2);
  console.log(`side by side on the shipped model: --max-batch 1 vs --max-batch ${maxBatch}; ${header}; workers ${args.workers}\n`);
  const runs: Record<string, LoadSummary> = {};
  for (const b of [1, maxBatch]) {
    const { child, url } = await startBatchServer(b);
    try {
      runs[`max-batch ${b}`] = await bench(`--max-batch ${b}`, url);
    } finally {
      await stopCliServer(child);
    }
    console.log();
  }
  const [off, on] = [runs["max-batch 1"]!, runs[`max-batch ${maxBatch}`]!];
  const ratio = on.imageThroughput / off.imageThroughput;
  console.log(`Throughput ratio (batching / --max-batch 1): ${ratio.toFixed(2)}x  (${on.imageThroughput.toFixed(2)} vs ${off.imageThroughput.toFixed(2)} images/s)`);
  console.log(`P50 latency: ${on.latencyMs.p50.toFixed(0)} ms vs ${off.latencyMs.p50.toFixed(0)} ms`);
  Object.assign(out, { runs, ratio });
} else {
  console.log(`${args["base-url"]}: ${header}\n`);
  out.result = await bench("Serving Benchmark Result", args["base-url"]!);
}
if (args.json) writeFileSync(args.json, JSON.stringify(out, null, 2));
