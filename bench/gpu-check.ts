/**
 * Device check (run by bench/gpu-check.sh): every layout fixture and the shipped model on `cpu` and, where they
 * start, on `cuda` and `webgpu`. Per model and device: load time, then the median of `--rounds` timed generations
 * after one warm-up, the speed ratio against cpu, and how far the warm-up image is from cpu's (largest difference
 * in levels, 0-255). A device that cannot start prints its error (the ConfigError naming what is missing) instead
 * of numbers, and the run goes on. `--webgpu-rounds` keeps a software adapter (lavapipe: a CPU emulation) short.
 *
 *   npx tsx bench/gpu-check.ts [--devices cpu,cuda,webgpu] [--rounds 3] [--webgpu-rounds N] [--threads N] [--json FILE]
 */
import { writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { parseArgs } from "node:util";
import { DEFAULT_MODEL_DIR } from "../src/core/paths.js";
import { OmniDiffusionRequest } from "../src/core/request.js";
import { DEVICES, type Device } from "../src/pipelines/device.js";
import { loadPipeline } from "../src/pipelines/load.js";
import { probeWebGpu } from "../src/pipelines/webgpu-adapter.js";
import { intFlag, median, table } from "./lib/stats.js";

const { values: args } = parseArgs({
  options: {
    devices: { type: "string", default: "cpu,cuda" },
    rounds: { type: "string", default: "3" },
    "webgpu-rounds": { type: "string" },
    threads: { type: "string", default: String(availableParallelism()) },
    json: { type: "string" },
    "probe-webgpu": { type: "boolean", default: false },
  },
});
if (args["probe-webgpu"]) {
  // `--probe-webgpu`: only say whether a WebGPU adapter works here (gpu-check.sh's adapter section); exit 3 if not.
  const probe = await probeWebGpu();
  console.log(probe.ok ? "webgpu: an adapter computed on onnxruntime's WebGPU provider" : `webgpu: no usable adapter: ${probe.reason}`);
  for (const line of probe.stderr.split("\n").filter((l) => l.trim() && !/^\s+at /.test(l))) console.log(`  driver said: ${line.replace(/^Warning:\s*/, "")}`);
  process.exit(probe.ok ? 0 : 3);
}
const devices = args.devices!.split(",").map((d) => d.trim()) as Device[];
for (const d of devices) if (!(DEVICES as readonly string[]).includes(d)) throw new RangeError(`--devices: unknown device "${d}" (known: ${DEVICES.join(", ")})`);
const rounds = intFlag("rounds", args.rounds, 1);
const roundsOn = (d: Device) => (d === "webgpu" && args["webgpu-rounds"] ? intFlag("webgpu-rounds", args["webgpu-rounds"], 1) : rounds);
const threads = intFlag("threads", args.threads, 1);

const FIXTURES = new URL("../test/fixtures/models/", import.meta.url).pathname;
/** Model, and one request at a size and step count typical for it. */
const CASES: { name: string; dir: string; req: ConstructorParameters<typeof OmniDiffusionRequest>[0] }[] = [
  { name: "tiny-shapes (shipped)", dir: DEFAULT_MODEL_DIR, req: { prompt: "a red circle on a blue background", numInferenceSteps: 20, numOutputsPerPrompt: 4 } },
  { name: "sd15 512x512", dir: `${FIXTURES}sd15`, req: { prompt: "a photo of a cat", width: 512, height: 512, numInferenceSteps: 10 } },
  { name: "sd15-fp16 512x512", dir: `${FIXTURES}sd15-fp16`, req: { prompt: "a photo of a cat", width: 512, height: 512, numInferenceSteps: 10 } },
  { name: "sd15-fixed 512x512", dir: `${FIXTURES}sd15-fixed`, req: { prompt: "a photo of a cat", width: 512, height: 512, numInferenceSteps: 10 } },
  { name: "sd21 768x768 v-pred", dir: `${FIXTURES}sd21`, req: { prompt: "a photo of a cat", width: 768, height: 768, numInferenceSteps: 10, guidanceScale: 5 } },
  { name: "sd-turbo 512x512 1 step", dir: `${FIXTURES}sd-turbo`, req: { prompt: "a photo of a cat", width: 512, height: 512, numInferenceSteps: 1, guidanceScale: 0 } },
  { name: "lcm 512x512 4 steps", dir: `${FIXTURES}lcm`, req: { prompt: "a photo of a cat", width: 512, height: 512, numInferenceSteps: 4 } },
];

interface Result {
  model: string;
  device: Device;
  loadMs?: number;
  msPerRequest?: number;
  /** The warm-up request's first image (RGB), compared with cpu's. */
  image?: Uint8Array;
  /** webgpu: host<->device bytes per timed request, counted by the pipeline's DeviceTensors (latents stay on the device). */
  bytesPerRequest?: { up: number; down: number };
  error?: string;
}

async function measure(c: (typeof CASES)[number], device: Device): Promise<Result> {
  const t0 = performance.now();
  let pipeline;
  try {
    // webgpu at 512² and up: attention in 16 slices (same outputs), so the score tensor fits one GPU buffer (128 MiB
    // on lavapipe). Not for tiny-shapes: slicing its small attention only adds nodes (and CPU fallbacks).
    const sliced = device === "webgpu" && (c.req.width ?? 0) >= 512;
    pipeline = await loadPipeline(c.dir, { device, intraOpNumThreads: threads, ...(sliced ? { memory: { attentionSlices: 16 } } : {}) });
  } catch (err) {
    return { model: c.name, device, error: (err as Error).message };
  }
  const loadMs = performance.now() - t0;
  try {
    const run = async (i: number) => {
      const out = await pipeline.generate([new OmniDiffusionRequest({ ...c.req, seed: i, requestId: `r${i}` })]);
      const err = Object.values(out.errors)[0];
      if (err) throw err;
      return out.output[0]!.data;
    };
    const image = await run(0); // warm-up: kernel selection, shader compilation, allocator growth
    const times: number[] = [];
    const counter = (pipeline as { deviceTensors?: { bytes: { up: number; down: number } } | null }).deviceTensors?.bytes;
    const before = counter ? { ...counter } : null;
    for (let i = 1; i <= roundsOn(device); i++) {
      const t = performance.now();
      await run(i);
      times.push(performance.now() - t);
    }
    const n = roundsOn(device);
    const bytesPerRequest = counter && before ? { up: (counter.up - before.up) / n, down: (counter.down - before.down) / n } : undefined;
    return { model: c.name, device, loadMs, msPerRequest: median(times), image, ...(bytesPerRequest ? { bytesPerRequest } : {}) };
  } catch (err) {
    return { model: c.name, device, loadMs, error: (err as Error).message };
  } finally {
    await pipeline.release();
  }
}

const results: Result[] = [];
/** A device that could not start is not retried for every model: its error is printed once. */
const unavailable = new Map<Device, string>();
for (const c of CASES) {
  for (const d of devices) {
    if (unavailable.has(d)) {
      results.push({ model: c.name, device: d, error: `not run: ${d} unavailable (above)` });
      continue;
    }
    const r = await measure(c, d);
    if (r.error && r.loadMs === undefined && /^device "/.test(r.error)) unavailable.set(d, r.error);
    results.push(r);
    const bytes = r.bytesPerRequest ? `, host->device ${(r.bytesPerRequest.up / 1024).toFixed(1)} KiB and device->host ${(r.bytesPerRequest.down / 1024).toFixed(1)} KiB per request` : "";
    console.log(r.error ? `${c.name} on ${d}: FAILED: ${r.error}` : `${c.name} on ${d}: load ${r.loadMs!.toFixed(0)} ms, ${r.msPerRequest!.toFixed(1)} ms/request${bytes}`);
  }
}

/** Largest per-value difference of two RGB images, in levels (Infinity when their sizes differ). */
function levels(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Infinity;
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

const gpus = devices.includes("cpu") ? devices.filter((d) => d !== "cpu") : [];
const rows: (string | number)[][] = [["model", ...devices.map((d) => `${d} ms/request`), ...gpus.flatMap((d) => [`${d} speed-up`, `${d} vs cpu (levels)`])]];
for (const c of CASES) {
  const of = (d: Device) => results.find((r) => r.model === c.name && r.device === d);
  const cells = devices.map((d) => (of(d)?.msPerRequest !== undefined ? of(d)!.msPerRequest!.toFixed(1) : "failed"));
  const cpu = of("cpu");
  const versus = gpus.flatMap((d) => {
    const g = of(d);
    return [cpu?.msPerRequest && g?.msPerRequest ? `${(cpu.msPerRequest / g.msPerRequest).toFixed(2)}x` : "-", cpu?.image && g?.image ? levels(cpu.image, g.image) : "-"];
  });
  rows.push([c.name, ...cells, ...versus]);
}
const roundsNote = devices.map((d) => `${roundsOn(d)} on ${d}`).join(", ");
console.log(`\nmedian of timed requests (${roundsNote}) after one warm-up, ${threads} onnxruntime threads (fixtures: tiny random weights in the real layouts, so GPU gains are small)`);
console.log(table(rows));
if (args.json) writeFileSync(args.json, JSON.stringify({ threads, rounds, results: results.map(({ image: _, ...r }) => r) }, null, 2));
// Exit 3 when a requested GPU device could not run (bench/gpu-check.sh says which).
process.exitCode = results.some((r) => r.device !== "cpu" && r.error) ? 3 : 0;
