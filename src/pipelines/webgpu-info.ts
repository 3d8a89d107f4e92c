import { execFile } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { probeWebGpu, webGpuUnavailableError, quietVulkanEnvironment } from "./webgpu-adapter.js";
import { readWebGpuLimits, type WebGpuLimits } from "./webgpu-limits.js";

/** Where the Vulkan loader looks for drivers' manifests on Linux (the ones distributions install into). */
const ICD_DIRS = ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d", "/usr/local/share/vulkan/icd.d"];

/** What `info --device webgpu` prints about the machine's WebGPU side. */
export interface WebGpuInfo {
  /** Vulkan driver manifests found (Linux), or where `VK_ICD_FILENAMES` points the loader instead. */
  vulkanDrivers: string[];
  /** Physical devices as `vulkaninfo --summary` names them (empty when vulkan-tools is not installed). */
  vulkanDevices: string[];
  /** Dawn's and the driver's warnings while the probe opened the adapter (the software adapter prints two). */
  warnings: string[];
  /** The buffer limits requests are checked against, and whether half-precision shaders run natively. */
  limits: WebGpuLimits;
}

/** Vulkan driver manifests the loader will read here. */
export function vulkanDrivers(env: NodeJS.ProcessEnv = process.env): string[] {
  const forced = env.VK_ICD_FILENAMES ?? env.VK_DRIVER_FILES;
  if (forced) return forced.split(":").map((f) => `${f} (from VK_ICD_FILENAMES)`);
  if (process.platform !== "linux") return [];
  return ICD_DIRS.flatMap((d) => {
    try {
      return readdirSync(d).filter((f) => f.endsWith(".json")).map((f) => join(d, f));
    } catch {
      return [];
    }
  });
}

/** `deviceName` lines of `vulkaninfo --summary`, or [] where it is not installed or fails. */
function vulkanDevices(): Promise<string[]> {
  return new Promise((resolve) => {
    execFile("vulkaninfo", ["--summary"], { timeout: 30_000 }, (err, stdout) => {
      if (err) return resolve([]);
      resolve([...stdout.matchAll(/deviceName\s*=\s*(.+)/g)].map((m) => m[1]!.trim()));
    });
  });
}

/**
 * Probes the adapter and describes the machine; throws the one-line ConfigError (with the drivers found) when no
 * adapter works.
 */
export async function describeWebGpu(): Promise<WebGpuInfo> {
  quietVulkanEnvironment();
  const [probe, devices, limits] = await Promise.all([probeWebGpu(), vulkanDevices(), readWebGpuLimits()]);
  const drivers = vulkanDrivers();
  if (!probe.ok) {
    const found = process.platform === "linux" ? `; Vulkan drivers installed: ${drivers.length ? drivers.join(", ") : "none"}` : "";
    throw webGpuUnavailableError(`${probe.reason ?? "unknown"}${found}`);
  }
  const warnings = probe.stderr.split("\n").map((l) => l.replace(/^Warning:\s*/, "").trim()).filter(Boolean);
  return { vulkanDrivers: drivers, vulkanDevices: devices, warnings, limits };
}
