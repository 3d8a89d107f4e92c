import { isAlive } from "../../src/testing/is-alive.js";
import { setTimeout as delay } from "node:timers/promises";

export { isAlive };

/** Waits until every pid is gone or `ms` elapse; returns the pids still running. */
export async function waitGone(pids: number[], ms: number): Promise<number[]> {
  const until = Date.now() + ms;
  let alive = pids.filter(isAlive);
  while (alive.length && Date.now() < until) {
    await delay(50);
    alive = alive.filter(isAlive);
  }
  return alive;
}

/**
 * Resolves once `pid` is stopped (state `T` in /proc/PID/stat): `process.kill(pid, "SIGSTOP")` returns before
 * the kernel has stopped the target, and a stopped process can write nothing more.
 */
export async function waitStopped(pid: number): Promise<void> {
  const { readFileSync } = await import("node:fs");
  for (;;) {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Field 3, after the parenthesised command name (which may itself hold spaces or parentheses).
    if (stat.slice(stat.lastIndexOf(")") + 2).startsWith("T")) return;
    await delay(5);
  }
}
