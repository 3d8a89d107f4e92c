/**
 * Attention slicing's cost in time, side by side in one process: the full-size UNet (training/fixtures/fullsize/,
 * built on demand) loaded as exported and with its attention in N query-row slices, called alternately on the
 * same inputs at one size, guidance 1. Prints each call's time, the medians and their ratio, and the largest
 * difference between the two outputs (the arithmetic per row is the same; only float summation order may differ).
 *
 *   npx tsx bench/attention-slicing.ts [--kind sd15|sd21] [--size 512] [--slices 16] [--repeat 3] [--threads N]
 */
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import * as ort from "onnxruntime-node";
import { OnnxModel, memoryTuningFor } from "../src/pipelines/onnx-model.js";
import { ensureFullsizeModel, type FullsizeKind } from "./lib/fullsize.js";
import { describeMachine } from "./lib/machine.js";
import { intFlag, median } from "./lib/stats.js";

const { values: args } = parseArgs({
  options: {
    kind: { type: "string", default: "sd15" },
    size: { type: "string", default: "512" },
    slices: { type: "string", default: "16" },
    repeat: { type: "string", default: "3" },
    threads: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (args.help) {
  console.log("npx tsx bench/attention-slicing.ts [--kind sd15|sd21] [--size 512] [--slices 16] [--repeat 3] [--threads N]");
  process.exit(0);
}
const size = intFlag("size", args.size, 64);
const slices = intFlag("slices", args.slices, 2);
const repeat = intFlag("repeat", args.repeat, 1);
const threads = args.threads ? intFlag("threads", args.threads, 1) : availableParallelism();
const dir = await ensureFullsizeModel(args.kind as FullsizeKind);
console.log(describeMachine());
const path = join(dir, "unet", "model.onnx");
// Both with the shipped settings for big models, differing only in the slices.
const tuning = memoryTuningFor(Infinity);
const plain = new OnnxModel("unet", path, { intraOpNumThreads: threads, memory: { ...tuning, attentionSlices: 1 } });
const sliced = new OnnxModel("unet", path, { intraOpNumThreads: threads, memory: { ...tuning, attentionSlices: slices } });
await plain.load();
await sliced.load();
console.log(`UNet ${path}: ${sliced.slicedAttention} attention blocks sliced in ${slices}; ${size}x${size}, batch 1`);

const lat = size / 8;
let k = 0;
const noise = (n: number) => Float32Array.from({ length: n }, () => Math.sin(++k * 0.37));
const hidden = sliced.input("encoder_hidden_states")!.shape[2];
const feeds = {
  sample: new ort.Tensor("float32", noise(4 * lat * lat), [1, 4, lat, lat]),
  timestep: sliced.input("timestep")!.type === "int64" ? new ort.Tensor("int64", BigInt64Array.from([500n]), [1]) : new ort.Tensor("float32", Float32Array.from([500]), [1]),
  encoder_hidden_states: new ort.Tensor("float32", noise(77 * (typeof hidden === "number" ? hidden : 768)), [1, 77, typeof hidden === "number" ? hidden : 768]),
};
const times = { plain: [] as number[], sliced: [] as number[] };
let maxDiff = 0;
// One warm-up each (first runs pay onnxruntime's first-run costs), then alternate.
for (let i = 0; i <= repeat; i++) {
  const outs: Float32Array[] = [];
  for (const [name, model] of [["plain", plain], ["sliced", sliced]] as const) {
    const t = performance.now();
    const out = await model.run(feeds);
    const ms = performance.now() - t;
    if (i > 0) times[name].push(ms);
    outs.push(Object.values(out)[0]!.data as Float32Array);
  }
  for (let j = 0; j < outs[0]!.length; j++) maxDiff = Math.max(maxDiff, Math.abs(outs[0]![j]! - outs[1]![j]!));
  if (i > 0) console.log(`  call ${i}: as exported ${times.plain.at(-1)!.toFixed(0)} ms, sliced ${times.sliced.at(-1)!.toFixed(0)} ms`);
}
const [p, s] = [median(times.plain), median(times.sliced)];
console.log(`median UNet call: as exported ${p.toFixed(0)} ms, sliced ${s.toFixed(0)} ms; sliced / as exported = ${(s / p).toFixed(3)}`);
console.log(`largest output difference: ${maxDiff.toExponential(2)}`);
await plain.release();
await sliced.release();
