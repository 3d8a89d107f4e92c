/**
 * Real scale: the engine on a full-size, random-weight Stable Diffusion export (training/fixtures/fullsize/, built
 * on demand into a cache folder: ~4.3 GB, 1-2 min), side by side in one run:
 * - memory: a worker's RSS after load and at peak for one 512² image, against the bytes of weights it loaded,
 *   for the shipped session settings and for onnxruntime's own defaults with each setting changed alone (each in
 *   a process of its own: bench/lib/memory-probe.ts); load time and time to the first image;
 * - onnxruntime vs PyTorch eager on the same weights (torch_bench.py): one UNet call, one full VAE decode,
 *   one tiny-VAE decode;
 * - previews as a share of a UNet step: the tiny VAE (at most 192 px), the latent approximation, the full VAE;
 *   the tiny-VAE final decode against the full one;
 * - the UNet's GFLOP/s against the CPU's peak (FLOPs counted on the torch modules: count_flops.py);
 * - images per minute through the engine (one worker process, continuous batching) for a 1-step no-guidance
 *   (Turbo-style) and a 4-step (LCM-style) workload at 512², with 1 and 4 concurrent clients.
 *
 * Nothing is asserted: it prints. Machines are noisy; every ratio is taken from figures of this one run.
 *
 * - with --calibrate: the memory estimate (describeModel's `memory`) against measured peak RSS at 512² and 768²,
 *   batch 1-4 (combinations the estimate puts above 60 % of the machine are not run).
 *
 * - with --kind sdxl: what an SDXL-sized UNet (2.6 B parameters) at --size would need (weights, the engine's
 *   estimate of a worker's peak, the full-size maker's RAM and disk), without building it (bench/lib/sdxl-plan.ts).
 *
 *   npx tsx bench/realscale.ts [--kind sd15|sd21|sdxl] [--size 512] [--repeat 3] [--images 2] [--clients 1,4]
 *     [--skip-memory] [--skip-torch] [--skip-throughput] [--calibrate] [--flops-per-cycle N] [--json FILE]
 */
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { totalmem } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { estimateWorkerBytes } from "../src/core/memory-estimate.js";
import { OmniDiffusionRequest } from "../src/core/request.js";
import { DiffusionEngine } from "../src/engine/engine.js";
import { PREVIEW_MAX_SIDE } from "../src/pipelines/image-decoder.js";
import { approximateRgb } from "../src/pipelines/latent-preview.js";
import { loadPipeline } from "../src/pipelines/load.js";
import { ARENA_MAX_WEIGHT_BYTES, memoryTuningFor, type MemoryTuning } from "../src/pipelines/onnx-model.js";
import type { SteppablePipeline } from "../src/pipelines/types.js";
import { PYTHON, ensureFullsizeModel, torchBench, type FullsizeKind, type TorchBenchWhat } from "./lib/fullsize.js";
import { describeMachine, fp32FlopsPerCycle, machineInfo } from "./lib/machine.js";
import { intFlag, intListFlag, median, table } from "./lib/stats.js";
import { sdxlPlan } from "./lib/sdxl-plan.js";

const { values: args } = parseArgs({
  options: {
    kind: { type: "string", default: "sd15" },
    size: { type: "string", default: "512" },
    repeat: { type: "string", default: "3" },
    images: { type: "string", default: "2" },
    clients: { type: "string", default: "1,4" },
    "skip-memory": { type: "boolean", default: false },
    "skip-torch": { type: "boolean", default: false },
    "skip-throughput": { type: "boolean", default: false },
    calibrate: { type: "boolean", default: false },
    "flops-per-cycle": { type: "string" },
    json: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (args.help) {
  console.log(readHeader());
  process.exit(0);
}
if (args.kind === "sdxl") {
  const planSize = intFlag("--size", args.size, 64);
  console.log(`SDXL-sized UNet at ${planSize}x${planSize}: not built (the full-size maker has no SDXL kind; its build needs the RAM below)`);
  console.log(table([["dtype", "weights GiB", "peak guided GiB", "peak turbo GiB", "UNet act./row GiB", "build RAM GiB", "disk GiB"], ...sdxlPlan(planSize).map((r) => [r.dtype, ...[r.weightsGiB, r.guidedPeakGiB, r.turboPeakGiB, r.unetActivationsPerRowGiB, r.buildRamGiB, r.diskGiB].map((v) => v.toFixed(2))])]));
  console.log(`this machine: ${(totalmem() / 1024 ** 3).toFixed(1)} GiB`);
  process.exit(0);
}
const kind = args.kind as FullsizeKind;
if (kind !== "sd15" && kind !== "sd21") throw new Error(`--kind must be sd15, sd21 or sdxl, got ${args.kind}`);
const size = intFlag("--size", args.size, 64);
const repeat = intFlag("--repeat", args.repeat, 1);
const images = intFlag("--images", args.images, 1);
const clientCounts = intListFlag("--clients", args.clients);
const GiB = 1024 ** 3;
/** --calibrate runs no combination whose estimate is above this share of the machine's memory. */
const CALIBRATE_MAX_SHARE = 0.6;
const results: Record<string, unknown> = { kind, size };
const ms = (v: number) => v.toFixed(0);
const pct = (v: number) => `${(100 * v).toFixed(1)} %`;

/** This file's header comment, as --help. */
function readHeader(): string {
  const src = readFileSync(fileURLToPath(import.meta.url), "utf8");
  return src.slice(src.indexOf("/**") + 3, src.indexOf(" */")).replace(/^ \* ?/gm, "").trim();
}

const machine = machineInfo();
console.log(describeMachine(machine));
const dir = await ensureFullsizeModel(kind, { log: (l) => console.log(`  fixture: ${l}`) });
console.log(`model: ${dir} (${kind}, random weights), ${size}x${size}`);

// ---- memory, load and first image: one process per setting ----
interface Probe {
  weightBytes: number;
  estimate: { total: number; unet: number; decode: number };
  rssAfterLoad: number;
  /** Peak RSS once the UNet steps ran, before the VAE decode. */
  peakAfterSteps: number;
  peakRss: number;
  loadMs: number;
  generateMs: number;
  unetMs: number[];
  decodeMs: number;
}
const PROBE = fileURLToPath(new URL("./lib/memory-probe.ts", import.meta.url));
function probe(memory: Partial<MemoryTuning>, at = { width: size, height: size, batch: 1, steps: 3 }): Probe {
  const req = { model: dir, ...at, guidance: 1, memory };
  const r = spawnSync(process.execPath, ["--import", "tsx", PROBE, JSON.stringify(req)], { encoding: "utf8", maxBuffer: 1 << 24 });
  const line = r.stdout.split("\n").find((l) => l.startsWith("{"));
  if (r.status !== 0 || !line) throw new Error(`memory probe ${JSON.stringify(memory)} failed (exit ${r.status}): ${r.stderr.slice(-2000)}`);
  return JSON.parse(line) as Probe;
}
/** The shipped settings for big models in a few words (the table's first column stays narrow). */
function shippedLabel(t: MemoryTuning): string {
  return [
    `arena ${t.cpuMemArena ? "on" : "off"}`,
    `${t.attentionSlices} attention slices`,
    t.mapInlineWeights ? "inline weights mapped" : "",
    t.vaeSlicing ? "VAE slicing" : "",
    t.prepacking ? "" : "pre-packing off",
    t.memPattern ? "" : "pattern planner off",
  ]
    .filter(Boolean)
    .join(", ");
}

const ORT_DEFAULTS: MemoryTuning = { cpuMemArena: true, memPattern: true, prepacking: true, attentionSlices: 1, mapInlineWeights: false, vaeSlicing: false };
let shipped: Probe | null = null;
if (!args["skip-memory"]) {
  const settings: [string, Partial<MemoryTuning>][] = [
    ["onnxruntime defaults (arena, pattern, pre-packing)", ORT_DEFAULTS],
    ["  arena off", { ...ORT_DEFAULTS, cpuMemArena: false }],
    ["  pre-packing off", { ...ORT_DEFAULTS, prepacking: false }],
    ["  pattern planner off", { ...ORT_DEFAULTS, memPattern: false }],
    ["  arena off, attention in 16 slices", { ...ORT_DEFAULTS, cpuMemArena: false, attentionSlices: 16 }],
    ["  arena off, inline weights mapped", { ...ORT_DEFAULTS, cpuMemArena: false, mapInlineWeights: true }],
    [`shipped (over ${ARENA_MAX_WEIGHT_BYTES / 1024 ** 2} MiB of weights: ${shippedLabel(memoryTuningFor(Infinity))})`, {}],
  ];
  const rows: (string | number)[][] = [["setting", "after load GiB", "peak in UNet GiB", "peak GiB", "peak / weights", "1st UNet ms", "next UNet ms", "VAE decode ms", "load ms"]];
  const measured: Record<string, Probe> = {};
  for (const [name, memory] of settings) {
    const p = probe(memory);
    measured[name.trim()] = p;
    rows.push([name, (p.rssAfterLoad / GiB).toFixed(2), (p.peakAfterSteps / GiB).toFixed(2), (p.peakRss / GiB).toFixed(2), (p.peakRss / p.weightBytes).toFixed(2), ms(p.unetMs[0]!), ms(median(p.unetMs.slice(1))), ms(p.decodeMs), ms(p.loadMs)]);
    console.log(`  probed: ${name.trim()}`);
  }
  shipped = measured[settings.at(-1)![0].trim()]!;
  console.log(`\nmemory (one ${size}² image, 3 steps, guidance 1, full VAE; weights loaded: ${(shipped.weightBytes / GiB).toFixed(2)} GiB)`);
  console.log(table(rows));
  const oneStep = shipped.generateMs - median(shipped.unetMs.slice(1)) * (shipped.unetMs.length - 1);
  console.log(`time to first image (shipped settings, 1 step): load ${ms(shipped.loadMs)} ms + image ${ms(oneStep)} ms = ${ms(shipped.loadMs + oneStep)} ms`);
  results.memory = measured;
}

// ---- the memory estimate against measured peaks ----
if (args.calibrate) {
  const machineBytes = totalmem();
  const described = await describedModel(dir);
  const rows: (string | number)[][] = [["size", "batch", "estimated GiB", "measured peak GiB", "estimate / measured"]];
  const grid: { size: number; batch: number; estimate: number; measured: number | null }[] = [];
  for (const side of [512, 768]) {
    for (let batch = 1; batch <= 4; batch++) {
      // The estimate decides what runs: one that would take most of the machine is not tried (the OOM killer would pick a process).
      const est = estimateWorkerBytes({ ...described, memory: described.memory! }, side, side, batch, batch).total;
      if (est > CALIBRATE_MAX_SHARE * machineBytes) {
        rows.push([`${side}²`, batch, (est / GiB).toFixed(2), `not run (> ${CALIBRATE_MAX_SHARE * 100} % of ${(machineBytes / GiB).toFixed(1)} GiB)`, ""]);
        grid.push({ size: side, batch, estimate: est, measured: null });
        continue;
      }
      const p = probe({}, { width: side, height: side, batch, steps: 1 });
      rows.push([`${side}²`, batch, (p.estimate.total / GiB).toFixed(2), (p.peakRss / GiB).toFixed(2), (p.estimate.total / p.peakRss).toFixed(2)]);
      grid.push({ size: side, batch, estimate: p.estimate.total, measured: p.peakRss });
      console.log(`  calibrated: ${side}² x ${batch}`);
    }
  }
  console.log(`
memory estimate (describeModel) against measured peak RSS, shipped settings, 1 step, guidance 1`);
  console.log(table(rows));
  results.calibration = grid;
}

// ---- one warm pipeline: UNet step, decodes, previews ----
const t0 = performance.now();
const pipe = (await loadPipeline(dir)) as SteppablePipeline;
const loadMs = performance.now() - t0;
const req = (vae: "full" | "tiny") => new OmniDiffusionRequest({ prompt: "a red circle on a blue background", width: size, height: size, numInferenceSteps: 20, guidanceScale: 1, seed: 1, vae });
const [full, tiny] = await pipe.prepare([req("full"), req("tiny")]);
const unetMs: number[] = [];
await pipe.step([full!]); // warm-up
for (let i = 0; i < repeat; i++) unetMs.push((await pipe.step([full!]))[0]!.unetMs!);
tiny!.samples[0]!.latents = full!.samples[0]!.latents;
tiny!.samples[0]!.predX0 = full!.samples[0]!.predX0;
const timed = async (fn: () => Promise<unknown> | unknown): Promise<number[]> => {
  await fn(); // warm-up
  const out: number[] = [];
  for (let i = 0; i < repeat; i++) {
    const s = performance.now();
    await fn();
    out.push(performance.now() - s);
  }
  return out;
};
const fullDecodeMs = await timed(() => pipe.decode([full!]));
const tinyDecodeMs = await timed(() => pipe.decode([tiny!]));
const previewPath = pipe.info.previews;
const previewMs = await timed(() => pipe.decode([full!], true));
const [c, h, w] = full!.latentShape;
const approxMs = await timed(() => approximateRgb(full!.samples[0]!.predX0 ?? full!.samples[0]!.latents, 0, w, h));
await pipe.release();
const step = median(unetMs);
console.log(`\nonnxruntime, one warm pipeline (load ${ms(loadMs)} ms; medians of ${repeat}; latents ${c}x${h}x${w})`);
console.log(
  table([
    ["what", "ms", "share of a UNet step"],
    ["UNet step (1 row)", ms(step), "100 %"],
    [`preview, ${previewPath === "tiny" ? `tiny VAE (${PREVIEW_MAX_SIDE} px max)` : previewPath}`, median(previewMs).toFixed(1), pct(median(previewMs) / step)],
    [`preview, latent approximation (${w}x${h} px)`, median(approxMs).toFixed(2), pct(median(approxMs) / step)],
    [`preview, full VAE (${size} px; only with previewDecoder: full)`, ms(median(fullDecodeMs)), pct(median(fullDecodeMs) / step)],
    ["final decode, full VAE", ms(median(fullDecodeMs)), pct(median(fullDecodeMs) / step)],
    ["final decode, tiny VAE (vae: tiny)", ms(median(tinyDecodeMs)), pct(median(tinyDecodeMs) / step)],
  ]),
);
console.log(`tiny-VAE final decode is ${(median(fullDecodeMs) / median(tinyDecodeMs)).toFixed(1)}x faster than the full VAE`);
results.onnxruntime = { loadMs, unetMs, fullDecodeMs, tinyDecodeMs, previewPath, previewMs, approxMs };

// ---- FLOPs and the CPU's peak ----
const flops = countFlops("unet");
if (flops) {
  const fpc = args["flops-per-cycle"] ? { value: Number(args["flops-per-cycle"]), why: "--flops-per-cycle" } : fp32FlopsPerCycle(machine.flags);
  const peak = machine.cores * machine.mhz * 1e6 * fpc.value;
  const achieved = flops / (step / 1000);
  console.log(
    `\nUNet: ${(flops / 1e9).toFixed(0)} GFLOP per row (conv, linear, attention matmuls); ${(achieved / 1e9).toFixed(1)} GFLOP/s = ${pct(achieved / peak)} of the CPU's ` +
      `${(peak / 1e9).toFixed(0)} GFLOP/s FP32 peak (${machine.cores} cores x ${machine.mhz.toFixed(0)} MHz x ${fpc.value}: ${fpc.why})`,
  );
  results.flops = { unet: flops, achieved, peak };
}

// ---- PyTorch eager on the same weights ----
if (!args["skip-torch"]) {
  const torch: Record<string, number[]> = {};
  for (const what of ["unet", "vae_decode", "tiny_decode"] as TorchBenchWhat[]) torch[what] = await torchBench(kind, what, size, 1, repeat);
  const pairs: [string, number[], number[]][] = [
    ["UNet call (1 row)", unetMs, torch.unet!],
    ["full VAE decode", fullDecodeMs, torch.vae_decode!],
    ["tiny VAE decode", tinyDecodeMs, torch.tiny_decode!],
  ];
  console.log(`\nonnxruntime vs PyTorch eager ${""}(same weights, ${machine.cores} threads each, medians of ${repeat})`);
  console.log(table([["what", "onnxruntime ms", "PyTorch ms", "ORT speed-up"], ...pairs.map(([n, o, t]) => [n, ms(median(o)), ms(median(t)), `${(median(t) / median(o)).toFixed(2)}x`])]));
  results.torch = torch;
}

// ---- images per minute through the engine ----
if (!args["skip-throughput"]) {
  const engine = await DiffusionEngine.create({ model: dir, numGpus: 1, batching: "continuous", workerStartTimeoutMs: 600_000 });
  try {
    const rows: (string | number)[][] = [["workload", "clients", "images", "seconds", "images/min"]];
    const through: Record<string, number> = {};
    for (const [name, steps, scheduler] of [
      ["1 step, no guidance (Turbo-style)", 1, "euler_a"],
      ["4 steps, no guidance (LCM-style)", 4, "euler"],
    ] as const) {
      for (const clients of clientCounts) {
        const s = performance.now();
        await Promise.all(
          Array.from({ length: clients }, async (_, k) => {
            for (let i = 0; i < images; i++) {
              const out = await engine.generate({ prompt: `a blue square ${k}`, width: size, height: size, numInferenceSteps: steps, guidanceScale: 1, scheduler, seed: k * 100 + i });
              if (!out.images.length) throw new Error(`no image for client ${k}`);
            }
          }),
        );
        const secs = (performance.now() - s) / 1000;
        const perMin = (clients * images * 60) / secs;
        through[`${steps}-step/${clients}`] = perMin;
        rows.push([name, clients, clients * images, secs.toFixed(1), perMin.toFixed(2)]);
      }
    }
    console.log(`\nthroughput at ${size}² through the engine (1 worker process, continuous batching)`);
    console.log(table(rows));
    results.throughput = through;
  } finally {
    await engine.close();
  }
}

if (args.json) writeFileSync(args.json, JSON.stringify(results, null, 2));

/** The model's ModelLimits as a worker would report them (loads the pipeline once, releases it). */
async function describedModel(model: string) {
  const p = (await loadPipeline(model, { intraOpNumThreads: 1 })) as SteppablePipeline;
  const limits = p.describe!();
  await p.release();
  return limits;
}

/** FLOPs of one call of a component (count_flops.py); null without torch. */
function countFlops(what: "unet"): number | null {
  const script = join(fileURLToPath(new URL("../training/fixtures/fullsize/", import.meta.url)), "count_flops.py");
  const r = spawnSync(PYTHON, [script, "--kind", kind, "--what", what, "--size", String(size)], { encoding: "utf8" });
  const line = r.stdout?.split("\n").find((l) => l.startsWith("{"));
  if (r.status !== 0 || !line) {
    console.log(`(FLOPs not counted: ${PYTHON} count_flops.py failed: ${(r.stderr ?? r.error?.message ?? "").slice(-300)})`);
    return null;
  }
  return (JSON.parse(line) as { flops: number }).flops;
}
