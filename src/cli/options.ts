import { resolve } from "node:path";
import { InvalidArgumentError, Option, type Command } from "commander";
import { DEVICES, type Device } from "../pipelines/device.js";
import { PREVIEW_DECODERS, type PreviewDecoder } from "../core/decoders.js";
import { modelConfigFromFlags, type ModelFlags } from "./model-flags.js";

/** Commander argument parsers that fail with a message naming the flag's expected form. */
export function intArg(min: number, max = Number.MAX_SAFE_INTEGER) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`expected an integer in [${min}, ${max}], got "${v}"`);
    return n;
  };
}

export function floatArg(min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min || n > max) throw new InvalidArgumentError(`expected a number in [${min}, ${max}], got "${v}"`);
    return n;
  };
}

/** img2img strength: a number in (0, 1] (0 would run no step at all). */
export function strengthArg(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0 || n > 1) throw new InvalidArgumentError(`expected a number in (0, 1], got "${v}"`);
  return n;
}

/** "WxH" → {width, height}. */
export function sizeArg(v: string): { width: number; height: number } {
  const m = /^(\d+)x(\d+)$/i.exec(v.trim());
  if (!m) throw new InvalidArgumentError(`expected WIDTHxHEIGHT such as 32x32, got "${v}"`);
  return { width: Number(m[1]), height: Number(m[2]) };
}

export function jsonObjectArg(v: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(v);
  } catch (err) {
    throw new InvalidArgumentError(`not valid JSON: ${(err as Error).message}`);
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) throw new InvalidArgumentError("expected a JSON object");
  return parsed as Record<string, unknown>;
}

/** The executor-related flags shared by every command that builds an engine. */
export interface EngineFlags extends ModelFlags {
  workers?: number;
  executor?: string;
  executorOptions?: Record<string, unknown>;
  threads?: number;
  /** `--spin-threads on|off` (see {@link spinThreadsOption}). */
  spinThreads?: "on" | "off";
  /** `--cpu-arena on|off` (see {@link cpuArenaOption}). */
  cpuArena?: "on" | "off";
  /** `--attention-slices N` (see {@link attentionSlicesOption}). */
  attentionSlices?: number;
  device?: Device;
  /** `--allow-non-native-sizes` (see {@link ALLOW_NON_NATIVE_FLAG}). */
  allowNonNativeSizes?: boolean;
  /** `--preview-vae DIR` and `--preview-decoder` (see {@link previewVaeOption}, {@link previewDecoderOption}). */
  previewVae?: string;
  previewDecoder?: PreviewDecoder;
  /** `--loras-dir DIR` (see {@link lorasDirOption}). */
  lorasDir?: string;
}

/** `--device cpu|cuda|webgpu`, shared by every command that loads the model. */
export function deviceOption(): Option {
  return new Option(
    "--device <device>",
    "where the model runs: cpu, cuda (onnxruntime-node's CUDA provider) or webgpu (any GPU with a Vulkan/Metal/D3D12 driver; experimental); see docs/models.md",
  ).choices(DEVICES);
}

/** `--spin-threads on|off` → `intraOpSpinning`, shared by every command that builds an engine. */
export function spinThreadsOption(): Option {
  return new Option("--spin-threads <on|off>", "let idle onnxruntime threads busy-wait for work (default: off under continuous batching, on otherwise)").choices(["on", "off"]);
}

/** `--preview-vae DIR`: a tiny VAE for previews and `--vae tiny`, shared by every command that loads the model. */
export function previewVaeOption(): Option {
  return new Option("--preview-vae <dir>", "tiny VAE folder (AutoencoderTiny ONNX export) for previews and --vae tiny; default: the model's tiny_vae/ (docs/models.md#tiny-vae)");
}

/** `--loras-dir DIR` → `lorasDir`: the LoRAs requests name, shared by every command that loads the model. */
export function lorasDirOption(): Option {
  return new Option("--loras-dir <dir>", "folder of LoRAs (*.safetensors, kohya or diffusers/PEFT format) that requests name; docs/models.md#loras");
}

/** `--preview-decoder auto|tiny|approx|full`, shared by every command that loads the model. */
export function previewDecoderOption(): Option {
  return new Option("--preview-decoder <how>", "what decodes previews: auto (tiny VAE, else the latent approximation), tiny, approx, or full (the full VAE: costly)").choices(PREVIEW_DECODERS);
}

/** `--cpu-arena on|off` → `cpuMemArena`, shared by every command that builds an engine. */
export function cpuArenaOption(): Option {
  return new Option("--cpu-arena <on|off>", "onnxruntime's CPU arena: faster, but keeps every session's peak memory (default: off for models over 256 MiB of weights)").choices(["on", "off"]);
}

/** `--attention-slices N` → `attentionSlices`, shared by every command that builds an engine. */
export function attentionSlicesOption(): Option {
  return new Option("--attention-slices <n>", "query-row slices per attention in the UNet and VAE decoder: less memory, same images (default: 16 for models over 256 MiB of weights; 1 turns it off)").argParser(intArg(1, 64));
}

/** The flag and help of the `allowNonNativeSizes` opt-in, shared by every command that builds an engine. */
export const ALLOW_NON_NATIVE_FLAG = ["--allow-non-native-sizes", "serve sizes other than the model's native one (never trained at; off by default)"] as const;

export function engineConfigFromFlags(f: EngineFlags) {
  return {
    ...modelConfigFromFlags(f),
    ...(f.workers ? { numGpus: f.workers } : {}),
    ...(f.executor ? { executorClass: f.executor } : {}),
    ...(f.executorOptions ? { executorOptions: f.executorOptions } : {}),
    ...(f.threads ? { intraOpNumThreads: f.threads } : {}),
    ...(f.spinThreads ? { intraOpSpinning: f.spinThreads === "on" } : {}),
    ...(f.cpuArena ? { cpuMemArena: f.cpuArena === "on" } : {}),
    ...(f.attentionSlices ? { attentionSlices: f.attentionSlices } : {}),
    ...(f.device ? { device: f.device } : {}),
    ...(f.allowNonNativeSizes ? { allowNonNativeSizes: true } : {}),
    ...(f.previewVae ? { tinyVae: f.previewVae } : {}),
    ...(f.previewDecoder ? { previewDecoder: f.previewDecoder } : {}),
    ...(f.lorasDir ? { lorasDir: resolve(f.lorasDir) } : {}),
  };
}

/** The connection-limit flags `serve` and `worker` share (see `docs/server.md`). */
export interface HttpLimitFlags {
  headersTimeout?: number;
  requestTimeout?: number;
  keepAliveTimeout?: number;
  maxConnections?: number;
  maxConnectionsPerAddress?: number;
  maxJsonDepth?: number;
}

/** Adds the connection-limit flags to a command. */
export function addHttpLimitFlags(cmd: Command): Command {
  return cmd
    .option("--headers-timeout <ms>", "request line and headers must arrive within this (else 408, socket closed; default 10000)", intArg(50))
    .option("--request-timeout <ms>", "the whole request, headers and body, must arrive within this (default 30000)", intArg(50))
    .option("--keep-alive-timeout <ms>", "idle keep-alive connections close after this (default 5000)", intArg(50))
    .option("--max-connections <n>", "most open connections; more are closed at once (default 1024)", intArg(1))
    .option("--max-connections-per-address <n>", "most open connections from one client address (default: a quarter of --max-connections; raise it behind a proxy)", intArg(1))
    .option("--max-json-depth <n>", "deepest nesting of a JSON body or RPC args (deeper: 400; default 64)", intArg(2, 1_000));
}

/** The limits given on the command line, as `HttpLimitsInput`. */
export function httpLimitsFromFlags(f: HttpLimitFlags) {
  return {
    ...(f.headersTimeout !== undefined ? { headersTimeoutMs: f.headersTimeout } : {}),
    ...(f.requestTimeout !== undefined ? { requestTimeoutMs: f.requestTimeout } : {}),
    ...(f.keepAliveTimeout !== undefined ? { keepAliveTimeoutMs: f.keepAliveTimeout } : {}),
    ...(f.maxConnections !== undefined ? { maxConnections: f.maxConnections } : {}),
    ...(f.maxConnectionsPerAddress !== undefined ? { maxConnectionsPerAddress: f.maxConnectionsPerAddress } : {}),
    ...(f.maxJsonDepth !== undefined ? { maxJsonDepth: f.maxJsonDepth } : {}),
  };
}
