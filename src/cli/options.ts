import { InvalidArgumentError, Option } from "commander";
import { DEVICES, type Device } from "../pipelines/device.js";

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
export interface EngineFlags {
  model?: string;
  workers?: number;
  executor?: string;
  executorOptions?: Record<string, unknown>;
  threads?: number;
  device?: Device;
  /** `--allow-non-native-sizes` (see {@link ALLOW_NON_NATIVE_FLAG}). */
  allowNonNativeSizes?: boolean;
}

/** `--device cpu|cuda`, shared by every command that loads the model. */
export function deviceOption(): Option {
  return new Option("--device <device>", "where the model runs: cpu, or cuda (onnxruntime-node's CUDA provider; see docs/models.md)").choices(DEVICES);
}

/** The flag and help of the `allowNonNativeSizes` opt-in, shared by every command that builds an engine. */
export const ALLOW_NON_NATIVE_FLAG = ["--allow-non-native-sizes", "serve sizes other than the model's native one (never trained at; off by default)"] as const;

export function engineConfigFromFlags(f: EngineFlags) {
  return {
    ...(f.model ? { model: f.model } : {}),
    ...(f.workers ? { numGpus: f.workers } : {}),
    ...(f.executor ? { executorClass: f.executor } : {}),
    ...(f.executorOptions ? { executorOptions: f.executorOptions } : {}),
    ...(f.threads ? { intraOpNumThreads: f.threads } : {}),
    ...(f.device ? { device: f.device } : {}),
    ...(f.allowNonNativeSizes ? { allowNonNativeSizes: true } : {}),
  };
}
