import type { OmniError } from "../errors/omni-error.js";

/** What {@link settleWithin} saw: how `p` settled, or that the time ran out first. */
export type Settled<T> = { status: "fulfilled"; value: T } | { status: "rejected"; reason: unknown } | { status: "timeout" };

/**
 * The one race of a promise against a timer: resolves (never rejects) with how `p` settled, or with
 * `{ status: "timeout" }` once `ms` pass. The work itself goes on either way; only the wait is bounded.
 * `unref`: the timer does not keep the process alive (for waits nobody needs an answer to at exit);
 * leave it off when a caller awaits the answer and nothing else may keep the event loop running.
 *
 * @example
 * ```ts
 * const s = await settleWithin(new Promise((r) => setTimeout(r, 10)), 1_000);
 * if (s.status === "timeout") console.log("still running after 1 s");
 * ```
 */
export function settleWithin<T>(p: Promise<T>, ms: number, opts: { unref?: boolean } = {}): Promise<Settled<T>> {
  return new Promise<Settled<T>>((resolve) => {
    const t = setTimeout(() => resolve({ status: "timeout" }), Math.max(0, ms));
    if (opts.unref) t.unref();
    p.then(
      (value) => {
        clearTimeout(t);
        resolve({ status: "fulfilled", value });
      },
      (reason: unknown) => {
        clearTimeout(t);
        resolve({ status: "rejected", reason });
      },
    );
  });
}

/**
 * `p`'s value, its rejection, or the error `onTimeout` builds once `ms` pass ({@link settleWithin}).
 *
 * @example
 * ```ts
 * import { TimeoutError } from "../errors/omni-error.js";
 * const v = await orTimeout(Promise.resolve(42), 1_000, () => new TimeoutError("no answer within 1 s"));
 * ```
 */
export async function orTimeout<T>(p: Promise<T>, ms: number, onTimeout: () => OmniError): Promise<T> {
  const s = await settleWithin(p, ms);
  if (s.status === "fulfilled") return s.value;
  throw s.status === "rejected" ? s.reason : onTimeout();
}
