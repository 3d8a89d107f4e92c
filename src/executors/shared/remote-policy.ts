import { DelegateBackoff, ExponentialBackoff, decorrelatedJitterGenerator, handleWhen, retry, type IBackoff, type IRetryBackoffContext } from "cockatiel";
import { OmniError, TimeoutError, toOmniError } from "../../errors/omni-error.js";
import { Deadline } from "./deadline.js";
import type { Endpoint, EndpointPool } from "./endpoint-pool.js";

/** Retry knobs of a {@link RemotePolicy}. */
export interface RetryOptions {
  /** Retries after the first attempt (0 = no retry). */
  retries: number;
  /** First backoff delay, ms; later ones grow exponentially with decorrelated jitter. */
  backoffInitialMs: number;
  /** Largest backoff delay (and largest Retry-After honoured), ms. */
  backoffMaxMs: number;
}

/** What one attempt gets: its endpoint, the call's deadline (pass `deadline.signal` and `deadline.remaining()` down). */
export interface AttemptContext<C> {
  endpoint: Endpoint<C>;
  deadline: Deadline;
  /** 0 for the first attempt. */
  attempt: number;
}

/** One retry decision, for logs and tests (delays are computed, not measured). */
export interface RetryEvent {
  operation: string;
  attempt: number;
  delayMs: number;
  endpoint: string | undefined;
  error: OmniError;
}

/** Per-call options of {@link RemotePolicy.execute}. */
export interface RemoteCallOptions {
  /** The total budget of the call (every attempt and backoff), ms. */
  timeoutMs: number;
  signal?: AbortSignal;
  /** Overrides the policy's retry count for this call (e.g. 0 for a health probe). */
  retries?: number;
  /** Appended to the TimeoutError's message when the budget runs out (e.g. which service limit set it). */
  timeoutNote?: string;
}

/** Whether a failed attempt may be repeated: the error says so (`retryable`: refused, reset, 408, 429, 5xx, UNAVAILABLE). */
export function isRetryable(err: unknown): boolean {
  return err instanceof OmniError && err.retryable;
}

/**
 * The one resilience layer every remote executor runs its calls through: composed cockatiel policies,
 * so transports have no retry loops of their own.
 *
 * - one {@link Deadline} per call: the total budget; every attempt gets the remaining time (transports
 *   propagate it to the server) and no backoff runs past it;
 * - retry with exponential backoff and decorrelated jitter, on retryable errors only; a server's
 *   `Retry-After` (`data.retryAfterMs`) is honoured when no other endpoint could take the retry;
 * - failover: each attempt goes to an endpoint the call has not tried yet while one is available,
 *   least outstanding requests first ({@link EndpointPool});
 * - each attempt runs through its endpoint's circuit breaker, which also keeps the endpoint's metrics.
 *
 * @example
 * ```ts
 * import { Endpoint, EndpointPool } from "./endpoint-pool.js";
 * const pool = new EndpointPool([new Endpoint("http://127.0.0.1:8000", null, { threshold: 3, halfOpenAfterMs: 2_000 })]);
 * const policy = new RemotePolicy(pool, { retries: 2, backoffInitialMs: 50, backoffMaxMs: 2_000 });
 * const reply = await policy.execute("ping", async ({ endpoint, deadline }) => `${endpoint.url} ${deadline.remaining()}`, { timeoutMs: 5_000 });
 * ```
 */
export class RemotePolicy<C> {
  readonly pool: EndpointPool<C>;
  readonly options: RetryOptions;
  #listeners: ((e: RetryEvent) => void)[] = [];

  constructor(pool: EndpointPool<C>, options: RetryOptions) {
    this.pool = pool;
    this.options = options;
  }

  /** Registers a listener called before each retry's backoff. Returns an unsubscribe function. */
  onRetry(listener: (e: RetryEvent) => void): () => void {
    this.#listeners.push(listener);
    return () => {
      this.#listeners = this.#listeners.filter((l) => l !== listener);
    };
  }

  /**
   * Runs `fn` until it succeeds, fails with a non-retryable error, runs out of retries or of budget.
   * Throws the last attempt's error; a TimeoutError (naming the last failure) when the budget ran out;
   * an AbortedError when the caller's signal aborted.
   */
  async execute<T>(operation: string, fn: (ctx: AttemptContext<C>) => Promise<T>, opts: RemoteCallOptions): Promise<T> {
    let last: OmniError | null = null;
    const ms = opts.timeoutMs;
    const deadline = new Deadline(ms, opts.signal, () => {
      const after = last ? ` (last error: ${last.message})` : "";
      const note = opts.timeoutNote ? `; ${opts.timeoutNote}` : "";
      return new TimeoutError(`${operation} timed out after ${ms}ms${after}${note}`, { cause: last ?? undefined, data: { method: operation, timeoutMs: ms } });
    });
    const tried = new Set<Endpoint<C>>();
    const policy = retry(
      handleWhen((err) => isRetryable(err) && !deadline.signal.aborted),
      { maxAttempts: opts.retries ?? this.options.retries, backoff: this.#backoff(operation, deadline) },
    );
    try {
      return await policy.execute(async ({ attempt }) => {
        if (deadline.signal.aborted) throw deadline.signal.reason;
        let endpoint: Endpoint<C>;
        try {
          endpoint = this.pool.pick(tried);
        } catch (err) {
          throw (last = toOmniError(err));
        }
        tried.add(endpoint);
        if (tried.size === this.pool.endpoints.length) tried.clear();
        try {
          return await endpoint.run(() => deadline.race(fn({ endpoint, deadline, attempt })), attempt > 0);
        } catch (err) {
          // The deadline's own reason (timeout or caller abort) is what the caller must see, not a side effect of it.
          throw (last = deadline.signal.aborted ? (deadline.signal.reason as OmniError) : toOmniError(err));
        }
      }, deadline.signal);
    } finally {
      deadline.dispose();
    }
  }

  /** Exponential decorrelated-jitter backoff, raised to a Retry-After when no other endpoint can take the retry, capped by the budget. */
  #backoff(operation: string, deadline: Deadline): DelegateBackoff<IRetryBackoffContext<unknown>, IBackoff<unknown>> {
    const { backoffInitialMs, backoffMaxMs } = this.options;
    const expo = new ExponentialBackoff({ generator: decorrelatedJitterGenerator, initialDelay: backoffInitialMs, maxDelay: backoffMaxMs });
    return new DelegateBackoff((ctx, state?: IBackoff<unknown>) => {
      const next = state ? state.next(ctx) : expo.next();
      const error = toOmniError("error" in ctx.result ? ctx.result.error : ctx.result.value);
      const endpointUrl = typeof error.data.endpoint === "string" ? error.data.endpoint : undefined;
      const retryAfter = typeof error.data.retryAfterMs === "number" ? error.data.retryAfterMs : 0;
      const honour = retryAfter > 0 && !this.pool.hasAlternative(this.pool.byUrl(endpointUrl));
      const delayMs = Math.floor(Math.min(Math.max(next.duration, honour ? retryAfter : 0), backoffMaxMs, deadline.remaining()));
      for (const l of this.#listeners) l({ operation, attempt: ctx.attempt, delayMs, endpoint: endpointUrl, error });
      return { delay: delayMs, state: next };
    });
  }
}
