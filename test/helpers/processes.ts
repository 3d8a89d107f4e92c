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
