/** Resident memory of a process and its children, from /proc (Linux). */
import { readFileSync } from "node:fs";

/** VmRSS of `pid` in MiB, or NaN when it cannot be read (gone, or no procfs). */
export function rssMiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** Direct children of `pid` (worker processes of a server). */
export function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** "server 123.4 MiB, workers [98.1, 97.3] MiB" for a server process and its children. */
export function rssLine(label: string, pid: number): string {
  const workers = childPids(pid).map((c) => rssMiB(c).toFixed(1));
  return `${label} ${rssMiB(pid).toFixed(1)} MiB, workers [${workers.join(", ")}] MiB`;
}
