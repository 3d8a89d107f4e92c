import { readFileSync } from "node:fs";

/**
 * User + system CPU these processes have used so far, µs, from /proc/<pid>/stat (Linux; 0 elsewhere or
 * when a process is gone). Resolution is one clock tick (10 ms): sum it over many calls.
 */
export function processesCpuUs(pids: (number | undefined)[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      // Fields after the ")" that ends the command name: utime and stime are the 12th and 13th.
      const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      return 0;
    }
  }
  return (ticks * 1e6) / 100; // USER_HZ is 100 on Linux
}
