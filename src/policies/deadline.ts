import { AbortedError, OmniError, type TimeoutError } from "../errors/omni-error.js";

/**
 * The reason a deadline's signal carries once the operation finished in time. One shared instance: an
 * error's stack costs more to build than the rest of a deadline, and a request makes several of them.
 */
const FINISHED = new AbortedError("operation finished");

/**
 * One deadline for one operation (vLLM's "one deadline per RPC"): an absolute time every wait of the
 * operation shares, and a `signal` that aborts when the deadline passes (reason: the TimeoutError built by
 * `onTimeout` at that moment, so it can name what was still outstanding) or when the caller's signal aborts
 * (reason: an AbortedError). `dispose()` when the operation ends, so waits still pending are dropped.
 *
 * @example
 * ```ts
 * import { TimeoutError } from "../errors/omni-error.js";
 * const dl = new Deadline(5_000, undefined, () => new TimeoutError("ping timed out"));
 * try {
 *   // ... pass dl.at to the worker and dl.signal to every wait ...
 * } finally {
 *   dl.dispose();
 * }
 * ```
 */
export class Deadline {
  /** Absolute `Date.now()` time. */
  readonly at: number;
  readonly ms: number;
  readonly #controller = new AbortController();
  #timer: NodeJS.Timeout | undefined;
  #caller: AbortSignal | undefined;
  #callerAborted = false;
  #onCallerAbort = () => {
    this.#callerAborted = true;
    // The operation is over: no timeout to build at the deadline, and no timer holding the event loop till then.
    clearTimeout(this.#timer);
    const reason: unknown = this.#caller?.reason;
    this.#controller.abort(
      reason instanceof OmniError ? reason : new AbortedError(`aborted by the caller${reason instanceof Error ? `: ${reason.message}` : ""}`, { cause: reason }),
    );
  };

  constructor(ms: number, caller: AbortSignal | undefined, onTimeout: () => TimeoutError) {
    this.ms = ms;
    this.at = Date.now() + ms;
    this.#caller = caller;
    if (caller?.aborted) this.#onCallerAbort();
    else caller?.addEventListener("abort", this.#onCallerAbort, { once: true });
    if (!this.#controller.signal.aborted) this.#timer = setTimeout(() => this.#controller.abort(onTimeout()), Math.max(0, ms));
  }

  /** Aborts at the deadline or when the caller aborts; `reason` says which. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** Milliseconds left (never negative). */
  remaining(): number {
    return Math.max(0, this.at - Date.now());
  }

  /** True when the caller (not the deadline) ended the operation. */
  get callerAborted(): boolean {
    return this.#callerAborted;
  }

  /** Rejects with the signal's reason as soon as it aborts, otherwise settles like `p`. */
  race<T>(p: Promise<T>): Promise<T> {
    const signal = this.signal;
    if (signal.aborted) {
      p.catch(() => undefined); // nobody else will handle p's rejection now
      return Promise.reject(signal.reason as Error);
    }
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => reject(signal.reason as Error);
      signal.addEventListener("abort", onAbort, { once: true });
      p.then(
        (v) => {
          signal.removeEventListener("abort", onAbort);
          resolve(v);
        },
        (e: unknown) => {
          signal.removeEventListener("abort", onAbort);
          reject(e);
        },
      );
    });
  }

  /** Stops the timer and drops every wait still attached to `signal`. Idempotent. */
  dispose(): void {
    clearTimeout(this.#timer);
    this.#caller?.removeEventListener("abort", this.#onCallerAbort);
    if (!this.#controller.signal.aborted) this.#controller.abort(FINISHED);
  }
}
