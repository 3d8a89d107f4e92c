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
 * The RPC hot path (bench/rpc.ts) pays for no more than it uses: the signal's AbortController is built only
 * when `signal` is read or a caller's signal is given, and `onExpire` hears the deadline without one (the
 * multi-process executor's fan-out settles its call from it).
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
  #controller: AbortController | null = null;
  /** Why it ended before a signal was asked for (the signal then starts aborted with it). */
  #reason: Error | null = null;
  #timer: NodeJS.Timeout | undefined;
  #caller: AbortSignal | undefined;
  #callerAborted = false;
  readonly #onTimeout: () => TimeoutError;
  readonly #onExpire: ((reason: TimeoutError) => void) | undefined;
  #onCallerAbort = () => {
    this.#callerAborted = true;
    // The operation is over: no timeout to build at the deadline, and no timer holding the event loop till then.
    clearTimeout(this.#timer);
    const reason: unknown = this.#caller?.reason;
    this.#end(reason instanceof OmniError ? reason : new AbortedError(`aborted by the caller${reason instanceof Error ? `: ${reason.message}` : ""}`, { cause: reason }));
  };

  /**
   * `ms` from now (0 or less: at the next timer turn, never synchronously, so the caller can still attach
   * its waits). `onExpire`, when given, is called once at the deadline with the TimeoutError, after the
   * signal aborted; not when the caller aborted or the deadline was disposed first.
   */
  constructor(ms: number, caller: AbortSignal | undefined, onTimeout: () => TimeoutError, onExpire?: (reason: TimeoutError) => void) {
    this.ms = ms;
    this.at = Date.now() + ms;
    this.#caller = caller;
    this.#onTimeout = onTimeout;
    this.#onExpire = onExpire;
    if (caller?.aborted) this.#onCallerAbort();
    else caller?.addEventListener("abort", this.#onCallerAbort, { once: true });
    if (!this.#ended) this.#timer = setTimeout(this.#expire, Math.max(0, ms));
  }

  #expire = () => {
    if (this.#ended) return;
    const reason = this.#onTimeout();
    this.#end(reason);
    this.#onExpire?.(reason);
  };

  get #ended(): boolean {
    return this.#reason !== null || (this.#controller?.signal.aborted ?? false);
  }

  #end(reason: Error): void {
    if (this.#controller) {
      if (!this.#controller.signal.aborted) this.#controller.abort(reason);
    } else this.#reason ??= reason;
  }

  /** Aborts at the deadline or when the caller aborts; `reason` says which. */
  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#reason) this.#controller.abort(this.#reason);
    }
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
    this.#end(FINISHED);
  }
}
