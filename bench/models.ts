/**
 * The model cache of issue 24 on the shipped tiny model, in one process (a DiffusionWorker, the code every executor
 * runs in its worker): cold load (loadPipeline, the miss path), warm switch (a request for another model already
 * loaded: the cache hit, no load), and the throughput of mixed-model traffic against single-model traffic. The mixed
 * run serves the tiny model under two names (two pipelines, two step loops sharing the worker's lane), so the
 * ratio prices only the split into per-weights-key loops, not a different model's speed. Runs alternate
 * (single, mixed, mixed, single, ...) so a machine whose speed drifts hits both alike.
 *
 *   npx tsx bench/models.ts [--requests 32] [--steps 4] [--rounds 2] [--threads 2] [--loads 3] [--max-call-ms auto|off|N] [--spin-threads off|on]
 *
 * Prints each figure and `mixed/single throughput ratio` against the goal (>= 0.9).
 */
import { availableParallelism } from "node:os";
import { parseArgs } from "node:util";
import { DEFAULT_MODEL_DIR } from "../src/core/paths.js";
import { OmniDiffusionRequest } from "../src/core/request.js";
import { loadPipeline } from "../src/pipelines/load.js";
import { DiffusionWorker } from "../src/workers/diffusion-worker.js";

const { values } = parseArgs({
  options: {
    requests: { type: "string", default: "32" },
    steps: { type: "string", default: "4" },
    rounds: { type: "string", default: "2" },
    threads: { type: "string", default: String(Math.min(2, availableParallelism())) },
    loads: { type: "string", default: "3" },
    "max-call-ms": { type: "string", default: "auto" },
    // The engine's default under continuous batching (config.ts: intraOpSpinning off). With spinning on, one key's
    // idle onnxruntime threads spin while the other key's call runs, and on 2 cores that cost mixed traffic 12-30 %.
    "spin-threads": { type: "string", default: "off" },
  },
});
const N = Number(values.requests);
const STEPS = Number(values.steps);
const ROUNDS = Number(values.rounds);
const THREADS = Number(values.threads);
const LOADS = Number(values.loads);
const MAX_CALL_MS = values["max-call-ms"] === "auto" || values["max-call-ms"] === "off" ? values["max-call-ms"] : Number(values["max-call-ms"]);
const load = { intraOpNumThreads: THREADS, intraOpSpinning: values["spin-threads"] === "on" };
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

// Cold load: the miss path (sessions created from the files).
const cold: number[] = [];
for (let i = 0; i < LOADS; i++) {
  const t = performance.now();
  const p = await loadPipeline(DEFAULT_MODEL_DIR, load);
  cold.push(performance.now() - t);
  await p.release();
}

const worker = await DiffusionWorker.create({
  rank: 0,
  modelDir: DEFAULT_MODEL_DIR,
  load,
  batching: "continuous",
  maxCallMs: MAX_CALL_MS,
  models: { "tiny-a": DEFAULT_MODEL_DIR, "tiny-b": DEFAULT_MODEL_DIR },
  defaultModel: "tiny-a",
});
const req = (i: number, model: string) => new OmniDiffusionRequest({ requestId: `r${i}-${model}-${Math.random()}`, prompt: "a red circle on a blue background", seed: i, numInferenceSteps: STEPS, model });
const one = async (model: string) => {
  const out = await worker.generateOutput([req(0, model)]);
  if (Object.keys(out.errors).length) throw Object.values(out.errors)[0];
};
// Loads tiny-b (a miss through the worker) and warms both.
const tMiss = performance.now();
await one("tiny-b");
const missMs = performance.now() - tMiss;
await one("tiny-a");

// Warm switch: a one-step request for the other, loaded model, against one for the model just used.
const oneStep = (model: string) => worker.generateOutput([new OmniDiffusionRequest({ prompt: "a red circle on a blue background", seed: 1, numInferenceSteps: 1, model })]);
const same: number[] = [];
const sw: number[] = [];
for (let i = 0; i < 10; i++) {
  let t = performance.now();
  await oneStep("tiny-a");
  same.push(performance.now() - t);
  t = performance.now();
  await oneStep(i % 2 ? "tiny-a" : "tiny-b");
  sw.push(performance.now() - t);
}
const loadsBefore = worker.getStats().models!.loads;

/** N concurrent requests (each its own call, as a server sends them); images per second. */
async function run(mixed: boolean): Promise<number> {
  const t = performance.now();
  const outs = await Promise.all(Array.from({ length: N }, (_, i) => worker.generateOutput([req(i, mixed && i % 2 ? "tiny-b" : "tiny-a")])));
  const ms = performance.now() - t;
  for (const o of outs) if (Object.keys(o.errors).length) throw Object.values(o.errors)[0];
  return (N / ms) * 1000;
}
const single: number[] = [];
const mixed: number[] = [];
for (let r = 0; r < ROUNDS; r++) {
  // Mirrored order per round: single, mixed | mixed, single.
  for (const m of r % 2 ? [true, false] : [false, true]) (m ? mixed : single).push(await run(m));
}
const loadsAfter = worker.getStats().models!.loads;
await worker.close();

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const ratio = mean(mixed) / mean(single);
console.log(`machine: ${availableParallelism()} cores; tiny-shapes, ${THREADS} thread(s) spinning ${values["spin-threads"]}, continuous batching, maxCallMs ${MAX_CALL_MS}`);
console.log(`cold load (loadPipeline), median of ${LOADS}: ${median(cold).toFixed(1)} ms`);
console.log(`first request for a model not loaded (load + ${STEPS} steps): ${missMs.toFixed(1)} ms`);
console.log(`warm switch: 1-step request for the other loaded model ${median(sw).toFixed(1)} ms vs the same model ${median(same).toFixed(1)} ms (median of 10; cache hit, no load)`);
console.log(`loads during the throughput runs: ${loadsAfter - loadsBefore} (0: every switch was a cache hit)`);
console.log(`throughput, ${N} concurrent ${STEPS}-step requests: single model ${mean(single).toFixed(2)} img/s, mixed two models ${mean(mixed).toFixed(2)} img/s`);
console.log(`per round: ${single.map((s, i) => (mixed[i]! / s).toFixed(3)).join(", ")}`);
console.log(`mixed/single throughput ratio: ${ratio.toFixed(3)} (goal >= 0.9: ${ratio >= 0.9 ? "met" : "NOT met"})`);
