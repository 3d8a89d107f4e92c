/**
 * What the engine and the multi-process executor add on top of the pipeline (issue 3, Benchmarks):
 * A = `engine.step(requests)` through the default MultiprocExecutor (1 worker process), against
 * B = the same pipeline loaded in this process (`loadPipeline`) and called directly (`generate`), with the
 * same requests, the same intraOpNumThreads and the same intraOpSpinning (the engine's default). Target: median(A) / median(B) ≤ 1.03.
 *
 * Both are loaded before any timing; rounds alternate A/B and swap the order every round (ABBA), so drift in
 * machine load hits both alike. While one side runs the other is idle (the worker waits on IPC; this process
 * waits on the worker).
 *
 *   npx tsx bench/engine-overhead.ts [--requests 8] [--steps N] [--rounds 6] [--threads 2] [--model DIR] [--json FILE]
 */
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { DEFAULT_MODEL_DIR, DiffusionEngine, OmniDiffusionRequest, loadPipeline, type GeneratedImage } from "../src/index.js";
import { describeMachine } from "./lib/machine.js";
import { processesCpuUs } from "./lib/proc-cpu.js";
import { intFlag, median, table } from "./lib/stats.js";

const { values: args } = parseArgs({
  options: {
    requests: { type: "string", default: "8" },
    steps: { type: "string" },
    rounds: { type: "string", default: "6" },
    threads: { type: "string", default: "2" },
    model: { type: "string", default: DEFAULT_MODEL_DIR },
    json: { type: "string" },
    help: { type: "boolean", default: false },
  },
});
if (args.help) {
  console.log("usage: tsx bench/engine-overhead.ts [--requests 8] [--steps N (model default)] [--rounds 6] [--threads 2] [--model DIR] [--json FILE]");
  process.exit(0);
}
const count = intFlag("requests", args.requests, 1);
const steps = args.steps === undefined ? null : intFlag("steps", args.steps, 1);
const rounds = intFlag("rounds", args.rounds, 1);
const threads = intFlag("threads", args.threads, 1);

console.log(describeMachine());

const COLORS = ["red", "green", "blue", "yellow", "orange", "purple", "white", "black"];
const SHAPES = ["circle", "square", "triangle", "star", "cross"];
/** The same prompts and seeds every time; fresh request ids (the engine rejects an id that is in use). */
const requests = () =>
  Array.from(
    { length: count },
    (_, i) => new OmniDiffusionRequest({ prompt: `a ${COLORS[i % 8]} ${SHAPES[i % 5]} on a ${COLORS[(i + 3) % 8]} background`, seed: 100 + i, numInferenceSteps: steps }),
  );

// The whole set must go to the worker as one batch, as it goes to the pipeline in one generate call.
const engine = await DiffusionEngine.create({ model: args.model, numGpus: 1, intraOpNumThreads: threads, limits: { maxBatchSize: Math.max(8, count) } });
try {
  const pipe = await loadPipeline(args.model!, { intraOpNumThreads: threads, intraOpSpinning: engine.config.intraOpSpinning });
  const { defaults } = pipe.info;
  console.log(
    `ran: ${count} requests per call, ${steps ?? defaults.numInferenceSteps} steps${steps === null ? " (model default)" : ""}, ` +
      `${defaults.scheduler} and guidance ${defaults.guidanceScale} (model defaults), intraOpNumThreads ${threads}, intraOpSpinning ${engine.config.intraOpSpinning}; ` +
      `A = engine.step via MultiprocExecutor (1 worker, batchWindowMs ${engine.config.batchWindowMs}), B = pipeline.generate in-process; ` +
      `1 warm-up each, then ${rounds} rounds A/B, order swapped every round\n`,
  );

  // CPU per call, this process plus the worker process: unlike wall time, it hardly moves with the machine's load.
  const cpu = { A: 0, B: 0 };
  const workerPids = () => ("rankStatus" in engine.executor ? (engine.executor.rankStatus as { pid: number | undefined }[]).map((r) => r.pid) : []);
  const runA = async (): Promise<{ s: number; images: GeneratedImage[] }> => {
    const reqs = requests();
    const pids = workerPids();
    const [c0, w0] = [process.cpuUsage(), processesCpuUs(pids)];
    const t0 = performance.now();
    const outs = await engine.step(reqs);
    const s = (performance.now() - t0) / 1000;
    const c1 = process.cpuUsage(c0);
    cpu.A += c1.user + c1.system + processesCpuUs(pids) - w0;
    const bad = outs.filter((o) => o.error || o.images.length !== 1);
    if (bad.length) throw new Error(`engine.step failed: ${bad.map((o) => o.error?.message ?? "no image").join("; ")}`);
    return { s, images: outs.map((o) => o.images[0]!) };
  };
  const runB = async (): Promise<{ s: number; images: GeneratedImage[] }> => {
    const reqs = requests();
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const out = await pipe.generate(reqs);
    const s = (performance.now() - t0) / 1000;
    const c1 = process.cpuUsage(c0);
    cpu.B += c1.user + c1.system;
    const images = reqs.map((r) => out.imagesFor(r.requestId)[0]);
    if (images.some((i) => !i)) throw new Error(`pipeline.generate failed: ${Object.values(out.errors).map((e) => e.message).join("; ")}`);
    return { s, images: images as GeneratedImage[] };
  };

  const a0 = await runA();
  const b0 = await runB();
  const identical = a0.images.every((img, i) => Buffer.from(img.data).equals(Buffer.from(b0.images[i]!.data)));

  const A: number[] = [];
  const B: number[] = [];
  cpu.A = cpu.B = 0; // the warm-up runs do not count
  const pairRatios: number[] = [];
  for (let r = 0; r < rounds; r++) {
    let a: number;
    let b: number;
    if (r % 2 === 0) {
      a = (await runA()).s;
      b = (await runB()).s;
    } else {
      b = (await runB()).s;
      a = (await runA()).s;
    }
    A.push(a);
    B.push(b);
    pairRatios.push(a / b);
    process.stderr.write(`round ${r + 1}/${rounds}: A ${a.toFixed(3)} s, B ${b.toFixed(3)} s\n`);
  }
  const [mA, mB] = [median(A), median(B)];
  console.log(
    table([
      ["variant", "median s", "min s", "max s", "images/s"],
      ["A engine.step (multiproc, 1 worker)", mA.toFixed(3), Math.min(...A).toFixed(3), Math.max(...A).toFixed(3), (count / mA).toFixed(2)],
      ["B pipeline.generate (in-process)", mB.toFixed(3), Math.min(...B).toFixed(3), Math.max(...B).toFixed(3), (count / mB).toFixed(2)],
    ]),
  );
  console.log(`\nratio of medians A/B: ${(mA / mB).toFixed(3)} (target <= 1.03); median of per-round ratios: ${median(pairRatios).toFixed(3)}; overhead ${((mA - mB) * 1000).toFixed(1)} ms per call`);
  console.log(`CPU per call (this process + worker): A ${(cpu.A / rounds / 1e6).toFixed(3)} s, B ${(cpu.B / rounds / 1e6).toFixed(3)} s, A/B ${(cpu.A / cpu.B).toFixed(3)}`);
  console.log(`same images from A and B: ${identical ? "yes, byte-identical" : "NO (same requests and seeds, different bytes)"}`);
  if (args.json) writeFileSync(args.json, JSON.stringify({ args, A, B, cpuA: cpu.A / rounds, cpuB: cpu.B / rounds, ratioOfMedians: mA / mB, medianPairRatio: median(pairRatios), identical }, null, 2));
  await pipe.release();
} finally {
  await engine.close();
}
