import { execFile } from "node:child_process";
import type { DeviceBufferLimits } from "../core/model-limits.js";

/**
 * The WebGPU adapter's buffer limits, which bound the largest tensor a session can hold (one GPU buffer, bound
 * as storage by the kernels). onnxruntime-node does not expose the adapter (no `navigator.gpu` in Node), so they
 * are read where Dawn reads them on Linux: the Vulkan driver's limits, as `vulkaninfo` prints them, mapped as
 * Dawn's Vulkan backend maps them (maxStorageBufferBindingSize ← maxStorageBufferRange; maxBufferSize ←
 * maxMemoryAllocationSize, and maintenance4's maxBufferSize where smaller). Without vulkaninfo (or on macOS and
 * Windows): the WebGPU specification's guaranteed minimum, which every adapter has.
 */

/** What every WebGPU adapter guarantees (the specification's default limits). */
export const WEBGPU_MINIMUM_LIMITS: DeviceBufferLimits = { maxBufferSize: 256 * 1024 ** 2, maxStorageBufferBindingSize: 128 * 1024 ** 2, source: "the WebGPU minimum" };

/** The adapter's limits plus whether it can run float16 shaders (null: unknown). */
export interface WebGpuLimits extends DeviceBufferLimits {
  shaderF16: boolean | null;
}

const num = (s: string): number => (s.startsWith("0x") ? parseInt(s, 16) : Number(s));

/** Every value of `key` in the text (one per physical device, sometimes printed twice). */
function values(text: string, key: string): number[] {
  return [...text.matchAll(new RegExp(`^\\s*${key}\\s*=\\s*(0x[0-9a-fA-F]+|\\d+)`, "gm"))].map((m) => num(m[1]!)).filter((v) => Number.isFinite(v) && v > 0);
}

/**
 * Limits from `vulkaninfo`'s full output; null when it names none. With several devices the smallest of each
 * wins (which one Dawn picks is its choice: the smallest is safe for all).
 */
export function parseVulkanLimits(text: string): WebGpuLimits | null {
  const range = values(text, "maxStorageBufferRange");
  const alloc = values(text, "maxMemoryAllocationSize");
  if (!range.length || !alloc.length) return null;
  const maxBuffer = Math.min(...alloc, ...values(text, "maxBufferSize"));
  const f16 = [...text.matchAll(/^\s*(shaderFloat16|storageBuffer16BitAccess)\s*=\s*(true|false)/gm)];
  return {
    maxBufferSize: maxBuffer,
    maxStorageBufferBindingSize: Math.min(Math.min(...range), maxBuffer),
    shaderF16: f16.length ? f16.every((m) => m[2] === "true") : null,
    source: "the Vulkan driver (vulkaninfo)",
  };
}

/** Most of vulkaninfo's output read: a full report is ~100 KiB per device. */
const MAX_VULKANINFO_BYTES = 8 * 1024 ** 2;

let cached: Promise<WebGpuLimits> | null = null;

/** The adapter's limits on this machine (read once per process); the WebGPU minimum where they cannot be read. */
export function readWebGpuLimits(): Promise<WebGpuLimits> {
  cached ??= new Promise((resolve) => {
    const fallback: WebGpuLimits = { ...WEBGPU_MINIMUM_LIMITS, shaderF16: null };
    if (process.platform !== "linux") return resolve(fallback);
    execFile("vulkaninfo", [], { timeout: 30_000, maxBuffer: MAX_VULKANINFO_BYTES }, (err, stdout) => {
      resolve((!err && parseVulkanLimits(stdout)) || fallback);
    });
  });
  return cached;
}

/** The line a float16 export logs on webgpu: native half-precision shaders or onnxruntime's float32 fallback kernels. */
export function float16Line(limits: WebGpuLimits): string {
  if (limits.shaderF16 === true) return "webgpu: float16 export; the adapter has shader-f16, so onnxruntime runs its half-precision kernels natively";
  if (limits.shaderF16 === false) {
    return "webgpu: float16 export, but the adapter lacks shader-f16 (Vulkan shaderFloat16 / storageBuffer16BitAccess): onnxruntime cannot compile half-precision shaders there; operators it cannot place on the device run on the CPU (the placement line names them)";
  }
  return "webgpu: float16 export; whether the adapter has shader-f16 is unknown here (no vulkaninfo): without it, operators onnxruntime cannot place on the device run on the CPU (the placement line names them)";
}
