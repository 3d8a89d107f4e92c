import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { ConfigError } from "../errors/omni-error.js";
import { assertWebGpuAdapter, webGpuUnavailableError } from "./webgpu-adapter.js";

import type { Device } from "../core/devices.js";

// The device list lives in core (the config validates names against it); this module checks a device is usable.
export { DEVICES, type Device } from "../core/devices.js";

/** Files onnxruntime-node loads for its CUDA execution provider, which its npm package does not bundle. */
const CUDA_PROVIDER_FILES = ["libonnxruntime_providers_shared.so", "libonnxruntime_providers_cuda.so"];

const INSTALL_HINT =
  "install them with `ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node` (or `npm ci --onnxruntime-node-install=cuda12`; " +
  "the CUDA 12 runtime, cuBLAS and cuDNN 9 must be on the library path); see docs/models.md#devices";

/** onnxruntime-node's native folder for this platform (where its CUDA provider libraries go). */
export function onnxruntimeBinDir(): string {
  const pkg = dirname(createRequire(import.meta.url).resolve("onnxruntime-node/package.json"));
  return join(pkg, "bin", "napi-v6", process.platform, process.arch);
}

/** Execution providers for a device: CUDA or WebGPU first, with CPU for the operators they lack. */
export function executionProviders(device: Device): string[] {
  return device === "cpu" ? ["cpu"] : [device, "cpu"];
}

/**
 * Checks that `device` can run here before a session is created: {@link assertDeviceAvailable} for cuda; for webgpu,
 * a probe process opens an adapter (once per process), so a machine without one gets a one-line ConfigError instead
 * of Dawn's stack lines on stderr.
 */
export async function prepareDevice(device: Device): Promise<void> {
  if (device === "webgpu") return assertWebGpuAdapter();
  assertDeviceAvailable(device);
}

/**
 * Throws a ConfigError (`field: "device"`) when `device` cannot run here: for `cuda`, a platform onnxruntime-node
 * has no CUDA build for, or its CUDA provider libraries missing (npm installs skip them unless asked).
 */
export function assertDeviceAvailable(device: Device): void {
  if (device !== "cuda") return;
  if (process.platform !== "linux" && process.platform !== "win32") {
    throw new ConfigError(`device "cuda" is not available on ${process.platform}: onnxruntime-node ships CUDA support for Linux and Windows x64 only`, {
      field: "device",
    });
  }
  if (process.platform !== "linux") return; // Windows builds bundle the provider DLLs' loader differently; let onnxruntime say.
  const dir = onnxruntimeBinDir();
  const missing = CUDA_PROVIDER_FILES.filter((f) => !existsSync(join(dir, f)));
  if (missing.length) {
    throw new ConfigError(`device "cuda" needs onnxruntime-node's CUDA provider libraries, missing from ${dir}: ${missing.join(", ")}; ${INSTALL_HINT}`, {
      field: "device",
      data: { missing, dir },
    });
  }
}

function firstLine(message: string): string {
  return message.split("\n")[0]!.replace(/^.*?\.cc:\d+ /, "").trim();
}

/**
 * The error for a session onnxruntime could not create on `device`: a WebGPU adapter that could not be opened, a CUDA provider that failed to start
 * (no GPU, driver too old, CUDA/cuDNN libraries missing) becomes a ConfigError naming the device; anything
 * else is returned as null for the caller's own error.
 */
export function deviceStartError(device: Device, err: unknown): ConfigError | null {
  const message = err instanceof Error ? err.message : String(err);
  // The probe found an adapter, but this session could not get one (the adapter went away, or the environment differs).
  if (device === "webgpu") return /WebGPU adapter|webgpu_context/i.test(message) ? webGpuUnavailableError(firstLine(message), err) : null;
  if (device !== "cuda" || !/cuda|cudnn|cublas|provider/i.test(message)) return null;
  return new ConfigError(`device "cuda": onnxruntime's CUDA execution provider could not start (${message}); ${INSTALL_HINT}`, {
    field: "device",
    cause: err,
  });
}
