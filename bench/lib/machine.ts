/**
 * What machine a benchmark ran on, printed at the top of every bench so numbers can be compared only
 * where the machine is the same: CPU model, cores, clock, SIMD flags, load average, Node and onnxruntime.
 */
import { readFileSync } from "node:fs";
import { availableParallelism, cpus, loadavg } from "node:os";
import { createRequire } from "node:module";

export interface MachineInfo {
  cpuModel: string;
  /** Logical CPUs this process may use. */
  cores: number;
  /** Clock from /proc/cpuinfo "cpu MHz" (in a VM: the nominal clock the hypervisor reports), else os.cpus(). */
  mhz: number;
  flags: Set<string>;
  loadavg: number[];
  node: string;
  onnxruntime: string;
}

export function machineInfo(): MachineInfo {
  let cpuinfo = "";
  try {
    cpuinfo = readFileSync("/proc/cpuinfo", "utf8");
  } catch {
    // not Linux: fall back to os.cpus()
  }
  const field = (name: string) => new RegExp(`^${name}\\s*:\\s*(.*)$`, "m").exec(cpuinfo)?.[1]?.trim();
  const mhz = Number(field("cpu MHz")) || cpus()[0]?.speed || 0;
  let onnxruntime = "?";
  try {
    onnxruntime = (createRequire(import.meta.url)("onnxruntime-node/package.json") as { version: string }).version;
  } catch {
    // the package.json export may be closed; the version is informational only
  }
  return {
    cpuModel: field("model name") ?? cpus()[0]?.model ?? "unknown",
    cores: availableParallelism(),
    mhz,
    flags: new Set((field("flags") ?? "").split(/\s+/).filter(Boolean)),
    loadavg: loadavg(),
    node: process.version,
    onnxruntime,
  };
}

/**
 * FP32 FLOPs per cycle per core, from the SIMD flags: lanes × 2 (an FMA is a multiply and an add) × 2 FMA
 * pipes, which Intel since Haswell and AMD since Zen 2 have (AVX2+FMA → 32; AVX-512 → 64; AVX without FMA:
 * one 8-lane add + one 8-lane multiply → 16; SSE → 8). Parts with a single FMA pipe reach half of this;
 * benches take `--flops-per-cycle` to override.
 */
export function fp32FlopsPerCycle(flags: Set<string>): { value: number; why: string } {
  if (flags.has("avx512f")) return { value: 64, why: "AVX-512: 16 lanes × FMA 2 × 2 pipes" };
  if (flags.has("avx2") && flags.has("fma")) return { value: 32, why: "AVX2+FMA: 8 lanes × FMA 2 × 2 pipes" };
  if (flags.has("avx")) return { value: 16, why: "AVX: 8-lane add + 8-lane mul" };
  return { value: 8, why: "SSE: 4-lane add + 4-lane mul" };
}

/** One line for the top of a bench's output. */
export function describeMachine(m: MachineInfo = machineInfo()): string {
  const simd = ["avx512f", "avx2", "fma", "avx"].filter((f) => m.flags.has(f)).join(",") || "none";
  return (
    `machine: ${m.cpuModel}, ${m.cores} cores @ ${m.mhz.toFixed(0)} MHz (${simd}); load avg ${m.loadavg.map((l) => l.toFixed(2)).join(" ")}; ` +
    `node ${m.node}, onnxruntime-node ${m.onnxruntime}`
  );
}
