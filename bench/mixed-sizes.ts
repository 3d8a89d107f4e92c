/**
 * Mixed image sizes under continuous batching (issue 20, item 5): many small requests and a few big ones on
 * one worker, with the rows rule (`maxCallMs: "off"`: the active set capped at --max-batch-rows rows, groups
 * chosen by rows) against the compute budget (`maxCallMs: "auto"` or --budget MS: calls priced by the UNet
 * profile the worker learns, groups sharing the UNet in cost), side by side in one run.
 *
 * Closed-loop clients (each sends its next request when the last one is answered) drive an in-process
 * DiffusionWorker for --duration-s per rule and round, after --warmup-s of the same traffic on that worker
 * (so V8 has optimised the loop and the budget's profile has been learned). Rounds run the rules in mirrored
 * order (A B, B A, ...) and pool each rule's requests, so a machine whose speed drifts hits both alike.
 * Prints per rule images/s, small- and big-request p50/p95 latency, UNet calls and mean rows per call per
 * size, the ratios budget/rows, and the profile the budget run learned (getStats().callBudget).
 *
 *   npx tsx bench/mixed-sizes.ts [--model test/fixtures/models/sd15] [--small 64x64] [--big 512x512]
 *     [--small-clients 16] [--big-clients 2] [--steps 4] [--big-steps 4] [--guidance 7.5] [--threads 2]
 *     [--max-batch-rows 32] [--budget auto|MS] [--duration-s 20] [--warmup-s 5] [--rounds 2] [--json FILE]
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { OmniDiffusionRequest } from "../src/core/request.js";
import type { CallBudgetStats, MaxCallMs } from "../src/pipelines/call-planner.js";
import { loadPipeline } from "../src/pipelines/load.js";
import type { DiffusionPipeline, StepProgress } from "../src/pipelines/types.js";
import { DiffusionWorker } from "../src/workers/diffusion-worker.js";
import { describeMachine } from "./lib/machine.js";
import { intFlag, percentile, table } from "./lib/stats.js";

const { values: args } = parseArgs({
  options: {
    model: { type: "string", default: join(import.meta.dirname, "..", "test", "fixtures", "models", "sd15") },
    small: { type: "string", default: "64x64" },
    big: { type: "string", default: "512x512" },
    "small-clients": { type: "string", default: "16" },
    "big-clients": { type: "string", default: "2" },
    steps: { type: "string", default: "4" },
    "big-steps": { type: "string" },
    guidance: { type: "string", default: "7.5" },
    threads: { type: "string", default: "2" },
    "max-batch-rows": { type: "string", default: "32" },
    budget: { type: "string", default: "auto" },
    "duration-s": { type: "string", default: "20" },
    "warmup-s": { type: "string", default: "5" },
    rounds: { type: "string", default: "2" },
    json: { type: "string" },
    help: { type: "boolean", default: false },
  },
});
if (args.help) {
  console.log(`usage: tsx bench/mixed-sizes.ts [--model DIR] [--small 64x64] [--big 512x512] [--small-clients 16] [--big-clients 2] [--steps 4]
       [--big-steps N] [--guidance 7.5] [--threads 2] [--max-batch-rows 32] [--budget auto|MS] [--duration-s 20] [--warmup-s 5] [--rounds 2] [--json FILE]`);
  process.exit(0);
}

const size = (flag: string, v: string): { width: number; height: number } => {
  const m = /^(\d+)x(\d+)$/.exec(v);
  if (!m) {
    console.error(`--${flag} must be WIDTHxHEIGHT, got ${v}`);
    process.exit(2);
  }
  return { width: Number(m[1]), height: Number(m[2]) };
};
const small = size("small", args.small!);
const big = size("big", args.big!);
const smallClients = intFlag("small-clients", args["small-clients"], 0);
const bigClients = intFlag("big-clients", args["big-clients"], 0);
const steps = intFlag("steps", args.steps, 1);
const bigSteps = args["big-steps"] ? intFlag("big-steps", args["big-steps"], 1) : steps;
const guidance = Number(args.guidance);
const threads = intFlag("threads", args.threads, 1);
const maxBatchRows = intFlag("max-batch-rows", args["max-batch-rows"], 1);
const durationMs = 1000 * intFlag("duration-s", args["duration-s"], 1);
const warmupMs = 1000 * intFlag("warmup-s", args["warmup-s"], 0);
const rounds = intFlag("rounds", args.rounds, 1);
const budget: MaxCallMs = args.budget === "auto" ? "auto" : Number(args.budget);
if (budget !== "auto" && !(budget > 0)) {
  console.error(`--budget must be "auto" or ms > 0, got ${args.budget}`);
  process.exit(2);
}
const RULES: { name: string; maxCallMs: MaxCallMs }[] = [
  { name: "rows (off)", maxCallMs: "off" },
  { name: `budget (${budget})`, maxCallMs: budget },
];

interface Done {
  cls: "small" | "big";
  latencyMs: number;
  images: number;
}

/** Per size: UNet calls, rows and ms, from the progress events of the measured requests (one primary event per call). */
type CallCounts = Record<string, { calls: number; rows: number; ms: number }>;

/** Every client sends back-to-back requests until `until`; resolves with every request answered and the calls they ran in. */
async function traffic(worker: DiffusionWorker, until: number, tag: string): Promise<{ done: Done[]; counts: CallCounts }> {
  const done: Done[] = [];
  const counts: CallCounts = {};
  let n = 0;
  const client = async (cls: "small" | "big") => {
    const dims = cls === "small" ? small : big;
    const key = `${dims.width}x${dims.height}`;
    const onProgress = (p: StepProgress) => {
      if (!p.batch?.primary) return;
      const c = (counts[key] ??= { calls: 0, rows: 0, ms: 0 });
      c.calls++;
      c.rows += p.batch.rows;
      c.ms += p.batch.ms;
    };
    while (performance.now() < until) {
      const id = `${tag}-${cls}-${n++}`;
      const r = new OmniDiffusionRequest({ prompt: "a red circle on a blue background", ...dims, numInferenceSteps: cls === "small" ? steps : bigSteps, guidanceScale: guidance, seed: n, requestId: id });
      const t0 = performance.now();
      const out = await worker.generateOutput([r], { onProgress });
      if (Object.keys(out.errors).length) throw new Error(`${id}: ${JSON.stringify(Object.values(out.errors)[0]?.message)}`);
      done.push({ cls, latencyMs: performance.now() - t0, images: out.output.length });
    }
  };
  await Promise.all([...Array.from({ length: smallClients }, () => client("small")), ...Array.from({ length: bigClients }, () => client("big"))]);
  return { done, counts };
}

interface Run {
  rule: string;
  wallMs: number;
  done: Done[];
  counts: CallCounts;
  budget: CallBudgetStats;
}

async function runRule(pipeline: DiffusionPipeline, rule: (typeof RULES)[number], round: number): Promise<Run> {
  const worker = new DiffusionWorker(pipeline, { rank: 0, batching: "continuous", maxBatchRows, maxCallMs: rule.maxCallMs });
  await traffic(worker, performance.now() + warmupMs, `w${round}`);
  const t0 = performance.now();
  const { done, counts } = await traffic(worker, t0 + durationMs, `r${round}`);
  const wallMs = performance.now() - t0;
  const b = worker.getStats().callBudget!;
  return { rule: rule.name, wallMs, done, counts, budget: b };
}

console.log(describeMachine());
console.log(
  `model ${args.model}; ${smallClients} clients of ${args.small} (${steps} steps) + ${bigClients} of ${args.big} (${bigSteps} steps), guidance ${guidance}; ` +
    `${threads} thread(s), --max-batch-rows ${maxBatchRows}; ${warmupMs / 1000} s warm-up + ${durationMs / 1000} s per rule and round, ${rounds} round(s)\n`,
);
// Threads sleep when idle, as the continuous policy runs them (config intraOpSpinning's default there).
const pipeline = await loadPipeline(args.model!, { intraOpNumThreads: threads, intraOpSpinning: false });
const runs = new Map<string, Run[]>(RULES.map((r) => [r.name, []]));
for (let k = 0; k < rounds; k++) {
  for (const rule of k % 2 === 0 ? RULES : [...RULES].reverse()) {
    const r = await runRule(pipeline, rule, k);
    const imgs = r.done.reduce((a, d) => a + d.images, 0);
    console.log(`round ${k + 1}/${rounds} ${rule.name}: ${((1000 * imgs) / r.wallMs).toFixed(1)} images/s, ${r.done.length} requests in ${(r.wallMs / 1000).toFixed(1)} s`);
    runs.get(rule.name)!.push(r);
  }
}
await pipeline.release();

interface Summary {
  rule: string;
  imagesPerS: number;
  small: { p50: number; p95: number; n: number };
  big: { p50: number; p95: number; n: number };
  perSize: Record<string, { calls: number; meanRows: number; meanMs: number }>;
}
const summaries: Summary[] = RULES.map(({ name }) => {
  const rs = runs.get(name)!;
  const done = rs.flatMap((r) => r.done);
  const lat = (cls: Done["cls"]) => done.filter((d) => d.cls === cls).map((d) => d.latencyMs);
  const stats = (xs: number[]) => ({ p50: percentile(xs, 50), p95: percentile(xs, 95), n: xs.length });
  const perSize: Summary["perSize"] = {};
  for (const r of rs) {
    for (const [s, c] of Object.entries(r.counts)) {
      const p = (perSize[s] ??= { calls: 0, meanRows: 0, meanMs: 0 });
      p.meanRows = (p.meanRows * p.calls + c.rows) / Math.max(1, p.calls + c.calls);
      p.meanMs = (p.meanMs * p.calls + c.ms) / Math.max(1, p.calls + c.calls);
      p.calls += c.calls;
    }
  }
  const wall = rs.reduce((a, r) => a + r.wallMs, 0);
  return { rule: name, imagesPerS: (1000 * done.reduce((a, d) => a + d.images, 0)) / wall, small: stats(lat("small")), big: stats(lat("big")), perSize };
});

const ms = (v: number) => (Number.isFinite(v) ? v.toFixed(0) : "-");
const sizes = [args.small!, args.big!];
console.log();
console.log(
  table([
    ["rule", "images/s", "small p50 ms", "small p95 ms", "big p50 ms", "big p95 ms", "small/big done", ...sizes.map((s) => `${s} calls · rows/call · ms/call`)],
    ...summaries.map((s) => [
      s.rule,
      s.imagesPerS.toFixed(1),
      ms(s.small.p50),
      ms(s.small.p95),
      ms(s.big.p50),
      ms(s.big.p95),
      `${s.small.n}/${s.big.n}`,
      ...sizes.map((z) => {
        const p = s.perSize[z];
        return p ? `${p.calls} · ${p.meanRows.toFixed(1)} · ${p.meanMs.toFixed(2)}` : "-";
      }),
    ]),
  ]),
);
const [rows, cost] = summaries as [Summary, Summary];
const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x`;
console.log(
  `\nbudget / rows: images/s ${ratio(cost.imagesPerS, rows.imagesPerS)}; small p50 ${ratio(cost.small.p50, rows.small.p50)}, p95 ${ratio(cost.small.p95, rows.small.p95)}; ` +
    `big p50 ${ratio(cost.big.p50, rows.big.p50)}, p95 ${ratio(cost.big.p95, rows.big.p95)}`,
);
const learned = runs.get(RULES[1]!.name)!.at(-1)!.budget;
console.log(`\nUNet profile the budget run learned (getStats().callBudget: median ms of one call per call size, recent calls):`);
console.log(
  table([
    ["size", "knee rows", "budget ms", "calls seen (rows: ms)"],
    ...learned.sizes.map((s) => [
      s.size,
      s.knee ? `${s.knee.rows}${s.knee.exploring ? " (exploring)" : ""}` : "-",
      s.budgetMs === null ? "-" : s.budgetMs.toFixed(2),
      s.calls.map((c) => `${c.rows}: ${c.ms.toFixed(2)}`).join(", "),
    ]),
  ]),
);
if (args.json) writeFileSync(args.json, JSON.stringify({ args, summaries, learned }, null, 2));
