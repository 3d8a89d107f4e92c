/**
 * LoRA fuse time and memory (issue 24), side by side in one run, each figure from a process of its own so its
 * peak RSS is its own:
 * - the small fixture (test/fixtures/loras): fusing the kohya LoRA (UNet + text encoder), and loadPipeline with it
 *   against loadPipeline without it;
 * - the full-size SD 1.5 UNet (training/fixtures/fullsize, in ~/.cache/omni-diffusion/fullsize/sd15, weights in
 *   weights.pb), where it exists: a kohya LoRA of rank R on every attention, feed-forward and projection layer of
 *   its transformer blocks (written here with random weights), fused; and the UNet session loaded with the fused
 *   weights against the session loaded as exported.
 *
 * Nothing is asserted: it prints.
 *
 *   npx tsx bench/lora-fuse.ts [--rank 32] [--repeat 3] [--skip-fullsize] [--skip-sessions]
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { loadPipeline } from "../src/pipelines/load.js";
import { fuseLoras, fusedInitializers } from "../src/pipelines/lora/fuse-loras.js";
import { findLayerWeights } from "../src/pipelines/lora/onnx-initializers.js";
import { OnnxModel, memoryTuningFor } from "../src/pipelines/onnx-model.js";
import { fullsizeRoot } from "./lib/fullsize.js";
import { intFlag, median, table } from "./lib/stats.js";

const SELF = fileURLToPath(import.meta.url);
const FIXTURES = fileURLToPath(new URL("../test/fixtures/loras/", import.meta.url));
const SMALL_MODEL = join(FIXTURES, "model");
const SMALL_LORA = { name: "style-kohya", scale: 0.8, path: join(FIXTURES, "style-kohya.safetensors") };

interface ProbeResult {
  ms: number;
  peakMiB: number;
  note?: string;
}

/** Runs one probe in a child process (its own peak RSS) and reads its JSON answer. */
function probe(args: string[]): ProbeResult {
  const r = spawnSync(process.execPath, ["--expose-gc", "--import", "tsx", SELF, "--probe", ...args], { encoding: "utf8", maxBuffer: 1 << 20 });
  const line = r.stdout.trim().split("\n").at(-1) ?? "";
  if (r.status !== 0 || !line.startsWith("{")) throw new Error(`probe ${args.join(" ")} failed (${r.status}): ${r.stderr.slice(-2000)}`);
  return JSON.parse(line) as ProbeResult;
}

function peakMiB(): number {
  return process.resourceUsage().maxRSS / 1024;
}

/** A kohya LoRA of `rank` (float16, random) on every transformer-block layer and proj_in/proj_out of a UNet graph. */
function writeFullsizeLora(unetGraph: string, rank: number, path: string): number {
  const layers = [...findLayerWeights(readFileSync(unetGraph)).values()].filter((l) => /transformer_blocks\.\d+\.|\.proj_(in|out)$/.test(l.module));
  const header: Record<string, unknown> = { __metadata__: { ss_network_dim: String(rank), ss_network_alpha: String(rank / 2) } };
  const blobs: Buffer[] = [];
  let at = 0;
  const add = (name: string, shape: number[], values: number) => {
    const buf = Buffer.alloc(values * 2);
    // Small float16 values (|x| < 2^-6: exponent bits 0x1000-0x2000) with random signs: cheap, finite, non-zero.
    for (let i = 0; i < values; i++) buf.writeUInt16LE(0x1000 + ((i * 2654435761) >>> 20) % 0x1000 + (i & 1 ? 0x8000 : 0), i * 2);
    header[name] = { dtype: "F16", shape, data_offsets: [at, at + buf.length] };
    blobs.push(buf);
    at += buf.length;
  };
  for (const l of layers) {
    const [out, inp] = l.layout === "out_in" ? [l.init.dims[0]!, l.init.dims.slice(1).reduce((n, d) => n * d, 1)] : [l.init.dims[1]!, l.init.dims[0]!];
    const key = `lora_unet_${l.module.replace(/\./g, "_")}`;
    const conv = l.op === "Conv";
    add(`${key}.lora_down.weight`, conv ? [rank, inp, 1, 1] : [rank, inp], rank * inp);
    add(`${key}.lora_up.weight`, conv ? [out, rank, 1, 1] : [out, rank], out * rank);
    const alpha = Buffer.alloc(2);
    alpha.writeUInt16LE(0x4c00 + 0 * rank, 0); // 16.0 in float16
    header[`${key}.alpha`] = { dtype: "F16", shape: [], data_offsets: [at, at + 2] };
    blobs.push(alpha);
    at += 2;
  }
  let json = Buffer.from(JSON.stringify(header));
  json = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(path, Buffer.concat([len, json, ...blobs]));
  return layers.length;
}

async function runProbe(kind: string, args: string[]): Promise<ProbeResult> {
  const t0 = performance.now();
  if (kind === "write-lora") {
    // For profiling one fuse on its own: --probe write-lora UNET_GRAPH RANK PATH, then --probe fuse MODEL PATH.
    const layers = writeFullsizeLora(args[0]!, Number(args[1]), args[2]!);
    return { ms: performance.now() - t0, peakMiB: peakMiB(), note: `${layers} layers` };
  }
  if (kind === "fuse") {
    const [model, lora] = args as [string, string];
    // The check and the fused weights of the UNet and text encoder, as a session load computes them.
    const specs = [{ name: "bench", scale: 0.8, path: lora }];
    const f = await fuseLoras(model, specs);
    let bytes = 0;
    for (const c of Object.keys(f.edits) as ("unet" | "text_encoder")[]) for (const b of (await fusedInitializers(model, specs, c)).values()) bytes += b.length;
    return { ms: performance.now() - t0, peakMiB: peakMiB(), note: `${f.layers} weights, ${(bytes / 2 ** 20).toFixed(2)} MiB fused` };
  }
  if (kind === "pipeline") {
    const [model, lora] = args as [string, string | undefined];
    const p = await loadPipeline(model, { intraOpNumThreads: 1, ...(lora ? { loras: [{ name: "bench", scale: 0.8, path: lora }] } : {}) });
    const ms = performance.now() - t0;
    await p.release();
    return { ms, peakMiB: peakMiB() };
  }
  // "unet": the UNet session alone, as the pipeline creates it for this model, with or without the fused weights.
  const [model, lora] = args as [string, string | undefined];
  const graphEdits = lora ? (await fuseLoras(model, [{ name: "bench", scale: 0.8, path: lora }])).edits : {};
  const weights = readFileSync(join(model, "unet", "model.onnx")).length + (existsSync(join(model, "unet", "weights.pb")) ? readFileSync(join(model, "unet", "config.json")).length * 0 + 3.4e9 : 0);
  const m = new OnnxModel("unet", join(model, "unet", "model.onnx"), { intraOpNumThreads: 2, memory: memoryTuningFor(weights), graphEdits });
  await m.load();
  const ms = performance.now() - t0;
  const peak = peakMiB();
  // Resident once loaded: what a loaded pipeline keeps (the fused weights' JS copies are garbage by then).
  (globalThis as { gc?: () => void }).gc?.();
  const after = process.memoryUsage().rss / 2 ** 20;
  await m.release();
  return { ms, peakMiB: peak, note: `${after.toFixed(0)} MiB resident once loaded` };
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { probe: { type: "boolean" }, rank: { type: "string" }, repeat: { type: "string" }, "skip-fullsize": { type: "boolean" }, "skip-sessions": { type: "boolean" } },
  });
  if (values.probe) {
    const [kind, ...rest] = positionals;
    console.log(JSON.stringify(await runProbe(kind!, rest)));
    return;
  }
  const repeat = intFlag("--repeat", values.repeat ?? "3", 1);
  const rank = intFlag("--rank", values.rank ?? "32", 1);
  const rows: (string | number)[][] = [["what", "median ms", "peak RSS MiB", "note"]];
  const med = (args: string[]) => {
    const runs = Array.from({ length: repeat }, () => probe(args));
    return { ms: median(runs.map((r) => r.ms)), peakMiB: Math.max(...runs.map((r) => r.peakMiB)), note: runs[0]!.note ?? "" };
  };
  const smallFuse = med(["fuse", SMALL_MODEL, SMALL_LORA.path]);
  rows.push(["small fixture: fuse kohya LoRA (UNet + text encoder)", smallFuse.ms.toFixed(1), smallFuse.peakMiB.toFixed(0), smallFuse.note]);
  const plain = med(["pipeline", SMALL_MODEL]);
  const withLora = med(["pipeline", SMALL_MODEL, SMALL_LORA.path]);
  rows.push(["small fixture: loadPipeline", plain.ms.toFixed(1), plain.peakMiB.toFixed(0), ""]);
  rows.push(["small fixture: loadPipeline with the LoRA", withLora.ms.toFixed(1), withLora.peakMiB.toFixed(0), `${(withLora.ms / plain.ms).toFixed(2)}x the plain load`]);
  const full = join(fullsizeRoot(), "sd15");
  if (!values["skip-fullsize"] && existsSync(join(full, "unet", "model.onnx"))) {
    const tmp = mkdtempSync(join(tmpdir(), "lora-bench-"));
    try {
      const lora = join(tmp, "fullsize.safetensors");
      const layers = writeFullsizeLora(join(full, "unet", "model.onnx"), rank, lora);
      const fuse = probe(["fuse", full, lora]);
      rows.push([`full-size SD 1.5 UNet: fuse rank-${rank} LoRA (${layers} layers)`, fuse.ms.toFixed(0), fuse.peakMiB.toFixed(0), fuse.note ?? ""]);
      if (!values["skip-sessions"]) {
        const bare = probe(["unet", full]);
        const fused = probe(["unet", full, lora]);
        rows.push(["full-size UNet session, as exported", bare.ms.toFixed(0), bare.peakMiB.toFixed(0), bare.note ?? ""]);
        rows.push(["full-size UNet session, LoRA fused (fuse included)", fused.ms.toFixed(0), fused.peakMiB.toFixed(0), `${(fused.ms / bare.ms).toFixed(2)}x time, ${(fused.peakMiB / bare.peakMiB).toFixed(2)}x peak; ${fused.note ?? ""}`]);
      }
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  } else rows.push(["full-size SD 1.5 UNet", "-", "-", `not run (${values["skip-fullsize"] ? "--skip-fullsize" : `no export in ${full}: npx tsx bench/realscale.ts builds it`})`]);
  console.log(table(rows));
}

await main();
