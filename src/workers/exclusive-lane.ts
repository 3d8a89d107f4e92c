/**
 * Runs pipeline work that must not overlap, one job after the other: a step-loop iteration, `sleep`
 * (release), `wakeUp` (reload) and `close`. A failed job does not block the next one.
 *
 * @example
 * ```ts
 * const lane = new ExclusiveLane();
 * const order: string[] = [];
 * await Promise.all([lane.run(async () => void order.push("sleep")), lane.run(async () => void order.push("wakeUp"))]);
 * ```
 */
export class ExclusiveLane {
  #tail: Promise<unknown> = Promise.resolve();

  /** Runs `fn` once every job queued before it has settled; settles like `fn`. */
  run<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(fn, fn);
    this.#tail = run.catch(() => undefined);
    return run;
  }
}
