/**
 * Pipeline speed of the shipped model, measured, not assumed (issue 2, section 4):
 * - images/s of `generate` at its default size, 20 DDIM steps with guidance 4, for batches of 1/4/16 requests;
 * - latency of one UNet call (the OnnxModel called directly, random inputs) at 1/2/8/16 rows;
 * - the same model sampled the same way in PyTorch eager (training/tiny-shapes/sample_torch.py under Debian's
 *   /usr/bin/python3, same thread count), and the onnxruntime/PyTorch speed ratio per image and per UNet call;
 * - the UNet's FLOPs per row and the achieved GFLOP/s against this machine's peak.
 *
 * - with `--device webgpu` (or cuda), the bytes that cross between host memory and the device per denoising step:
 *   every UNet call's input tensors (latents, timestep, text states) and output, counted at OnnxModel.run.
 * - with `--device webgpu`, images/s and host<->device bytes per step side by side, round by round, for the
 *   device-tensor modes (`on`: latents on the device, affine samplers step there; `host-samplers`: guidance on
 *   the device, one ε download per step; `off`: the host path), counted by the pipeline's DeviceTensors.
 *
 * onnxruntime and PyTorch runs are interleaved round by round (which goes first alternates) and medians are
 * reported, so a change in machine load hits both alike. Without torch or a checkpoint (CI) the PyTorch
 * columns are skipped and the rest still runs.
 *
 *   npx tsx bench/pipeline.ts [--threads 2] [--rounds 5] [--batches 1,4,16] [--unet-batches 1,2,8,16]
 *     [--unet-iters 20] [--steps 20] [--guidance 4] [--ckpt /work/train-run/ckpt.pt] [--python /usr/bin/python3]
 *     [--no-torch] [--flops-per-cycle N] [--model DIR] [--device cpu|cuda|webgpu] [--json FILE]
 */
import { readFileSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { DEFAULT_MODEL_DIR, OmniDiffusionRequest, loadPipeline } from "../src/index.js";
import { componentPath, readModelJson } from "../src/pipelines/model-files.js";
import { DEVICES, type Device } from "../src/pipelines/device.js";
import { OnnxModel, numericTensor, ort } from "../src/pipelines/onnx-model.js";
import { describeMachine, fp32FlopsPerCycle, machineInfo } from "./lib/machine.js";
import { intFlag, intListFlag, median, table } from "./lib/stats.js";
import { TorchPeer } from "./lib/torch-peer.js";
import { tinyUnetFlops, tinyUnetShape } from "./lib/unet-flops.js";

const { values: args } = parseArgs({
  options: {
    model: { type: "string", default: DEFAULT_MODEL_DIR },
    device: { type: "string", default: "cpu" },
    threads: { type: "string", default: "2" },
    rounds: { type: "string", default: "5" },
    batches: { type: "string", default: "1,4,16" },
    "unet-batches": { type: "string", default: "1,2,8,16" },
    "unet-iters": { type: "string", default: "20" },
    steps: { type: "string", default: "20" },
    guidance: { type: "string", default: "4" },
    ckpt: { type: "string", default: "/work/train-run/ckpt.pt" },
    python: { type: "string", default: "/usr/bin/python3" },
    "no-torch": { type: "boolean", default: false },
    "flops-per-cycle": { type: "string" },
    json: { type: "string" },
    help: { type: "boolean", default: false },
  },
});
if (args.help) {
  console.log("usage: tsx bench/pipeline.ts [--threads 2] [--rounds 5] [--batches 1,4,16] [--unet-batches 1,2,8,16] [--unet-iters 20]");
  console.log("       [--steps 20] [--guidance 4] [--ckpt PATH] [--python /usr/bin/python3] [--no-torch] [--flops-per-cycle N] [--model DIR] [--device cpu|cuda|webgpu] [--json FILE]");
  process.exit(0);
}

const threads = intFlag("threads", args.threads, 1);
const rounds = intFlag("rounds", args.rounds, 1);
const batches = intListFlag("batches", args.batches);
const unetBatches = intListFlag("unet-batches", args["unet-batches"]);
const unetIters = intFlag("unet-iters", args["unet-iters"], 1);
const steps = intFlag("steps", args.steps, 1);
const guidance = Number(args.guidance);
const modelDir = args.model!;
if (!(DEVICES as readonly string[]).includes(args.device!)) {
  console.error(`--device: "${args.device}" is not one of ${DEVICES.join(", ")}`);
  process.exit(2);
}
const device = args.device as Device;

/**
 * Bytes each component's run() hands to onnxruntime and gets back, in host memory: on a GPU device every one of them
 * crosses to the device or back (onnxruntime copies CPU inputs to the device and outputs to the CPU).
 */
const traffic = new Map<string, { calls: number; up: number; down: number; parts: Record<string, number> }>();
// A GPU tensor (webgpu's device-resident UNet output and inputs) crosses nothing here: it counts 0.
const bytesOf = (t: ort.Tensor) => (t.location === "cpu" ? (t.data as ArrayBufferView).byteLength : 0);
const originalRun = OnnxModel.prototype.run;
OnnxModel.prototype.run = async function (this: OnnxModel, f: Record<string, ort.Tensor>) {
  const out = await originalRun.call(this, f);
  const e = traffic.get(this.component) ?? { calls: 0, up: 0, down: 0, parts: {} };
  e.calls++;
  for (const [name, t] of Object.entries(f)) {
    e.up += bytesOf(t);
    e.parts[name] = (e.parts[name] ?? 0) + bytesOf(t);
  }
  for (const t of Object.values(out)) e.down += bytesOf(t);
  traffic.set(this.component, e);
  return out;
};

function readJson<T>(url: URL): T | null {
  try {
    return JSON.parse(readFileSync(url, "utf8")) as T;
  } catch {
    return null;
  }
}

const machine = machineInfo();
console.log(describeMachine(machine));
const fpc = args["flops-per-cycle"]
  ? { value: intFlag("flops-per-cycle", args["flops-per-cycle"], 1), why: "--flops-per-cycle" }
  : fp32FlopsPerCycle(machine.flags);
const peak = (cores: number) => (cores * machine.mhz * 1e6 * fpc.value) / 1e9;

const pipe = await loadPipeline(modelDir, { intraOpNumThreads: threads, device });
const { width, height } = pipe.info;
const unet = new OnnxModel("bench-unet", componentPath(modelDir, "unet"), { intraOpNumThreads: threads, device });
await unet.load();
const rowsPerImage = steps * (guidance > 1 ? 2 : 1);
console.log(
  `ran: ${pipe.info.className} (${modelDir}) at ${width}x${height}, ${steps} steps ddim, guidance ${guidance} (${rowsPerImage} UNet rows per image); ` +
    `batches ${batches.join("/")} requests per generate call; UNet calls at ${unetBatches.join("/")} rows × ${unetIters} per round; ` +
    `${rounds} rounds after a warm-up, medians; intraOpNumThreads ${threads}; device ${device}`,
);

// FLOPs: derived from the architecture here, and (when torch runs) counted with hooks on the PyTorch model.
const flops = tinyUnetFlops(
  tinyUnetShape(readModelJson(modelDir, "unet/config.json")!, readModelJson(modelDir, "text_encoder/config.json")!, height, width),
);
const torchOrSkip = args["no-torch"]
  ? { skipped: "--no-torch" }
  : await TorchPeer.start({ python: args.python!, ckpt: args.ckpt!, threads, modelDir });
const torch = torchOrSkip instanceof TorchPeer ? torchOrSkip : null;
const gf = (n: number) => (n / 1e9).toFixed(3);
console.log(
  `UNet FLOPs per row (2 per MAC in Conv2d/Linear/attention matmuls; norms and activations not counted): ${gf(flops.total)} GFLOP ` +
    `(conv ${gf(flops.parts.conv!)}, linear ${gf(flops.parts.linear!)}, attention ${gf(flops.parts.attention!)}) derived from model.py's architecture in bench/lib/unet-flops.ts`,
);
if (torch) {
  const counted = torch.meta.flops_per_row.total;
  const agree = counted === flops.total ? "agrees exactly" : `DIFFERS by ${(((counted - flops.total) / flops.total) * 100).toFixed(2)} %: update bench/lib/unet-flops.ts`;
  console.log(`  PyTorch forward-hook count: ${gf(counted)} GFLOP (${agree})`);
  // export.py records the exported checkpoint's step next to its reference outputs.
  const shipped = readJson<{ step?: number }>(new URL("../test/fixtures/tiny-shapes-reference.json", import.meta.url))?.step;
  const shippedParams = readModelJson<{ parameters?: number }>(modelDir, "unet/config.json")?.parameters;
  console.log(
    `PyTorch ${torch.meta.torch}, ${torch.meta.torch_threads} threads, checkpoint ${torch.meta.ckpt} (EMA, step ${torch.meta.ckpt_step}` +
      `${shipped !== undefined ? `; the shipped export is step ${shipped}` : ""}), UNet ${torch.meta.unet_params} parameters` +
      `${shippedParams !== undefined ? (shippedParams === torch.meta.unet_params ? " (same as the export)" : ` (export: ${shippedParams}: NOT the same architecture)`) : ""}`,
  );
} else {
  console.log(`PyTorch comparison skipped: ${(torchOrSkip as { skipped: string }).skipped}`);
}
console.log(
  `peak FP32: ${threads} threads × ${machine.mhz.toFixed(0)} MHz × ${fpc.value} FLOP/cycle (${fpc.why}) = ${peak(threads).toFixed(1)} GFLOP/s` +
    `${threads !== machine.cores ? ` (all ${machine.cores} cores: ${peak(machine.cores).toFixed(1)})` : ""}; clock as /proc/cpuinfo reports it (boost may be higher)\n`,
);

const COLORS = ["red", "green", "blue", "yellow", "orange", "purple", "white", "black"];
const SHAPES = ["circle", "square", "triangle", "star", "cross"];
/** The same prompts sample_torch.py uses; fresh request ids on every call. */
const requests = (batch: number, n: number) =>
  Array.from(
    { length: batch },
    (_, i) =>
      new OmniDiffusionRequest({
        prompt: `a ${COLORS[i % 8]} ${SHAPES[i % 5]} on a ${COLORS[(i + 3) % 8]} background`,
        seed: i,
        numInferenceSteps: n,
        guidanceScale: guidance,
        scheduler: "ddim",
      }),
  );

/** Per batch: the bytes of one UNet call (one denoising step) of its last generate call. */
const stepBytes = new Map<number, { up: number; down: number; parts: Record<string, number> }>();
async function ortSample(batch: number, n = steps): Promise<number> {
  const reqs = requests(batch, n);
  traffic.delete("unet");
  const t0 = performance.now();
  const out = await pipe.generate(reqs);
  const s = (performance.now() - t0) / 1000;
  const u = traffic.get("unet");
  if (u) stepBytes.set(batch, { up: u.up / u.calls, down: u.down / u.calls, parts: Object.fromEntries(Object.entries(u.parts).map(([k, v]) => [k, v / u.calls])) });
  const failed = Object.values(out.errors ?? {});
  if (failed.length || out.output.length !== batch) throw new Error(`generate failed: ${failed.map((e) => e.message).join("; ")}`);
  return s;
}

const timestepInput = unet.input("timestep")!;
const ctxShape = [16, 128];
{
  const [, t, d] = (unet.input("encoder_hidden_states")?.shape ?? []) as number[];
  if (typeof t === "number" && t > 0) ctxShape[0] = t;
  if (typeof d === "number" && d > 0) ctxShape[1] = d;
}
function unetFeeds(rows: number): Record<string, ort.Tensor> {
  let seed = rows * 7919;
  const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
  const fill = (n: number) => Float32Array.from({ length: n }, rand);
  return {
    sample: new ort.Tensor("float32", fill(rows * 3 * height * width), [rows, 3, height, width]),
    timestep: numericTensor(timestepInput.type, Array.from({ length: rows }, (_, i) => (i * 37) % 1000), [rows]),
    encoder_hidden_states: new ort.Tensor("float32", fill(rows * ctxShape[0]! * ctxShape[1]!), [rows, ctxShape[0]!, ctxShape[1]!]),
  };
}
const feeds = new Map(unetBatches.map((b) => [b, unetFeeds(b)]));
async function ortUnet(rows: number, iters: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < iters; i++) {
    const t0 = performance.now();
    await unet.run(feeds.get(rows)!);
    out.push((performance.now() - t0) / 1000);
  }
  return out;
}

// Warm-up (first runs allocate): a 2-step generate per batch and a few UNet calls per size, both sides.
for (const b of batches) {
  await ortSample(b, 2);
  await torch?.sample(b, 2, guidance);
}
for (const b of unetBatches) {
  await ortUnet(b, 2);
  await torch?.unet(b, 2);
}

const sampleT = { ort: new Map<number, number[]>(), torch: new Map<number, number[]>() };
const unetT = { ort: new Map<number, number[]>(), torch: new Map<number, number[]>() };
const push = (m: Map<number, number[]>, k: number, v: number[]) => m.set(k, [...(m.get(k) ?? []), ...v]);
for (let r = 0; r < rounds; r++) {
  const torchFirst = r % 2 === 1; // alternate who goes first, so neither always runs on a warmer cache
  for (const b of batches) {
    const runOrt = async () => push(sampleT.ort, b, [await ortSample(b)]);
    const runTorch = async () => (torch ? push(sampleT.torch, b, [await torch.sample(b, steps, guidance)]) : undefined);
    for (const run of torchFirst ? [runTorch, runOrt] : [runOrt, runTorch]) await run();
  }
  for (const b of unetBatches) {
    const runOrt = async () => push(unetT.ort, b, await ortUnet(b, unetIters));
    const runTorch = async () => (torch ? push(unetT.torch, b, await torch.unet(b, unetIters)) : undefined);
    for (const run of torchFirst ? [runTorch, runOrt] : [runOrt, runTorch]) await run();
  }
  process.stderr.write(`round ${r + 1}/${rounds} done\n`);
}
await torch?.close();
const deviceModes = device === "webgpu" ? await compareDeviceModes() : null;

/** webgpu: the device-tensor modes side by side (same requests, alternating order each round). */
async function compareDeviceModes() {
  const p = pipe as unknown as { deviceSteps: "on" | "host-samplers" | "off"; deviceTensors: { bytes: { up: number; down: number } } };
  const modes = ["on", "host-samplers", "off"] as const;
  const b = batches[0]!;
  const bytesFor = async (n: number) => {
    const before = { ...p.deviceTensors.bytes };
    const t0 = performance.now();
    const out = await pipe.generate(requests(b, n));
    if (Object.keys(out.errors ?? {}).length) throw new Error(`generate failed: ${Object.values(out.errors!).map((e) => e.message).join("; ")}`);
    return { s: (performance.now() - t0) / 1000, up: p.deviceTensors.bytes.up - before.up, down: p.deviceTensors.bytes.down - before.down };
  };
  const rows = new Map(modes.map((m) => [m, { times: [] as number[], up: 0, down: 0, steadyUp: NaN, steadyDown: NaN }]));
  for (const m of modes) {
    p.deviceSteps = m;
    const short = await bytesFor(2); // warm-up: the mode's small graphs compile here
    const full = await bytesFor(steps);
    Object.assign(rows.get(m)!, { up: full.up, down: full.down, steadyUp: (full.up - short.up) / (steps - 2), steadyDown: (full.down - short.down) / (steps - 2) });
  }
  for (let r = 0; r < rounds; r++) {
    for (const m of r % 2 ? [...modes].reverse() : modes) {
      p.deviceSteps = m;
      rows.get(m)!.times.push((await bytesFor(steps)).s);
    }
  }
  p.deviceSteps = "on";
  return modes.map((mode) => {
    const x = rows.get(mode)!;
    return { mode, imagesPerS: b / median(x.times), up: x.up, down: x.down, steadyUp: x.steadyUp, steadyDown: x.steadyDown };
  });
}

const pk = peak(threads);
const pct = (gflops: number) => `${((100 * gflops) / pk).toFixed(1)} %`;
const f = (v: number, d: number) => (Number.isFinite(v) ? v.toFixed(d) : "-");

const sampleRows: (string | number)[][] = [["batch", "ORT s/call", "ORT img/s", "ORT UNet GFLOP/s", "% peak", "torch s/call", "torch img/s", "ORT/torch per image"]];
const sampleSummary: Record<string, unknown>[] = [];
for (const b of batches) {
  const o = median(sampleT.ort.get(b)!);
  const t = torch ? median(sampleT.torch.get(b)!) : NaN;
  const g = ((b / o) * rowsPerImage * flops.total) / 1e9; // UNet FLOPs only; text encoder and scheduler math are not counted
  sampleRows.push([b, f(o, 3), f(b / o, 2), f(g, 2), pct(g), f(t, 3), f(b / t, 2), torch ? `${f(t / o, 2)}x` : "-"]);
  sampleSummary.push({ batch: b, ortSeconds: o, ortImagesPerS: b / o, ortUnetGflops: g, torchSeconds: t, ratio: t / o });
}
console.log(`generate, ${steps} steps, guidance ${guidance} (median of ${rounds}):`);
console.log(table(sampleRows));

const unetRows: (string | number)[][] = [["rows", "ORT ms/call", "ORT GFLOP/s", "% peak", "torch ms/call", "torch GFLOP/s", "ORT/torch"]];
const unetSummary: Record<string, unknown>[] = [];
for (const b of unetBatches) {
  const o = median(unetT.ort.get(b)!);
  const t = torch ? median(unetT.torch.get(b)!) : NaN;
  const go = (b * flops.total) / o / 1e9;
  const gt = (b * flops.total) / t / 1e9;
  unetRows.push([b, f(o * 1000, 2), f(go, 2), pct(go), f(t * 1000, 2), f(gt, 2), torch ? `${f(t / o, 2)}x` : "-"]);
  unetSummary.push({ rows: b, ortMs: o * 1000, ortGflops: go, torchMs: t * 1000, torchGflops: gt, ratio: t / o });
}
const kib = (n: number) => (n < 1024 ? `${Math.round(n)} B` : `${(n / 1024).toFixed(1)} KiB`);
console.log(
  `\nhost<->device per denoising step (one UNet call; counted at OnnxModel.run; device ${device}` +
    `${device === "cpu" ? ": on cpu nothing crosses, these stay in host memory)" : device === "webgpu" ? ": the UNet's own feeds; on webgpu its latents and text states are device tensors (0 B here), see the device-tensor table)" : ": the latents go to the device and back every step, the text states go up every step)"}:`,
);
console.log(
  table([
    ["batch", "host->device", "of which", "device->host"],
    ...batches.map((b) => {
      const x = stepBytes.get(b)!;
      return [b, kib(x.up), Object.entries(x.parts).map(([k, v]) => `${k} ${kib(v)}`).join(", "), kib(x.down)];
    }),
  ]),
);
console.log(`\nUNet call (median of ${rounds * unetIters} calls; ${gf(flops.total)} GFLOP per row; peak ${pk.toFixed(1)} GFLOP/s):`);
console.log(table(unetRows));
if (torch) {
  const ratios = sampleSummary.map((s) => s.ratio as number);
  console.log(`\nonnxruntime/PyTorch per image: ${ratios.map((r, i) => `batch ${batches[i]} ${r.toFixed(2)}x`).join(", ")} (target >= 4x)`);
}

if (deviceModes) {
  console.log(`\nwebgpu device tensors (batch ${batches[0]}, ${steps} steps ddim, guidance ${guidance}; median of ${rounds}; bytes from DeviceTensors; steady = (${steps} steps − 2 steps) / ${steps - 2}):`);
  console.log(table([["mode", "img/s", "up/step (steady)", "down/step (steady)", "up/request", "down/request"], ...deviceModes.map((m) => [m.mode, f(m.imagesPerS, 3), kib(m.steadyUp), kib(m.steadyDown), kib(m.up), kib(m.down)])]));
}

if (args.json) {
  writeFileSync(
    args.json,
    JSON.stringify({ machine: { ...machine, flags: undefined }, args, device, deviceModes, bytesPerStep: Object.fromEntries(stepBytes), flopsPerRow: flops, torch: torch?.meta ?? torchOrSkip, peakGflops: pk, sample: sampleSummary, unet: unetSummary }, null, 2),
  );
}
await unet.release();
await pipe.release();
