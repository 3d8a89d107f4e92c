import { DelegateBackoff, ExponentialBackoff, decorrelatedJitterGenerator, handleWhen, retry, type IBackoff, type IRetryBackoffContext } from "cockatiel";
import { OmniError, TimeoutError, TransportError, toOmniError } from "../errors/omni-error.js";
import { Deadline } from "./deadline.js";
import type { Endpoint, EndpointPool } from "./endpoint-pool.js";
import { Listeners } from "../utils/listeners.js";
import { describeFailure, publishRetry, withEndpoint, type RetryEvent } from "./retry-events.js";

/** Retry knobs of a {@link RemotePolicy}. */
export interface RetryOptions {
  /** Retries after the first attempt (0 = no retry). */
  retries: number;
  /** First backoff delay, ms; later ones grow exponentially with decorrelated jitter. */
  backoffInitialMs: number;
  /** Largest backoff delay (and largest Retry-After honoured), ms. */
  backoffMaxMs: number;
  /**
   * How long a call keeps retrying while every endpoint refuses connections (nothing listens there), ms;
   * past it the call fails naming the refusals. Default {@link DEFAULT_REFUSED_TIMEOUT_MS}.
   */
  refusedTimeoutMs?: number;
}

/** Default of {@link RetryOptions.refusedTimeoutMs}: long enough for a server restart, short enough to say "nothing listens" within seconds. */
export const DEFAULT_REFUSED_TIMEOUT_MS = 5_000;

/** What one attempt gets: its endpoint, the call's deadline (pass `deadline.signal` and `deadline.remaining()` down). */
export interface AttemptContext<C> {
  endpoint: Endpoint<C>;
  deadline: Deadline;
  /** 0 for the first attempt. */
  attempt: number;
}

export type { RetryEvent };

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

/** Socket errors that mean nothing can be reached at that address (as opposed to a connection that broke). */
const UNREACHABLE_ERRNOS = new Set(["ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND"]);

/**
 * Whether an attempt failed because the endpoint cannot be reached at all: a refused connection, no
 * route, an unknown host (`data.errno`), or a transport that says so itself (`data.unreachable`, e.g. a
 * gRPC channel in TRANSIENT_FAILURE). Read from the error's data, never its message.
 */
export function isUnreachable(err: unknown): boolean {
  if (!(err instanceof OmniError)) return false;
  return err.data.unreachable === true || (typeof err.data.errno === "string" && UNREACHABLE_ERRNOS.has(err.data.errno));
}

/** True for the pool's or a breaker's own refusal (no endpoint was tried). */
const isCircuitOpen = (err: OmniError): boolean => err.data.circuitOpen === true;

/**
 * The error of a call that every endpoint refused for `refusedTimeoutMs`: not retryable (nothing listens),
 * naming each endpoint's own failure; the last one is the cause.
 */
export function allUnreachableError(failures: ReadonlyMap<string, OmniError>, last: OmniError): TransportError {
  const list = [...failures].map(([url, e]) => withEndpoint(url, e));
  // Something answered at each, in another protocol (a gRPC port given to the http executor): say that.
  const what = [...failures.values()].every((e) => e.data.protocolMismatch === true) ? "no endpoint speaks the expected protocol" : "no endpoint can be reached";
  return new TransportError(`${what}: ${list.join("; ")}`, {
    cause: last,
    retryable: false,
    data: { endpoints: [...failures.keys()], errno: last.data.errno, unreachable: true },
  });
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
  readonly #listeners = new Listeners<RetryEvent>("retry");

  constructor(pool: EndpointPool<C>, options: RetryOptions) {
    this.pool = pool;
    this.options = options;
  }

  /** Registers a listener called before each retry's backoff. Returns an unsubscribe function. */
  onRetry(listener: (e: RetryEvent) => void): () => void {
    const sub = this.#listeners.add(listener);
    return () => sub.dispose();
  }

  /** Tells the listeners and {@link RETRY_CHANNEL} about a retry (the executor's start-up wait reports here too). */
  report(e: RetryEvent): void {
    this.#listeners.emit(e);
    publishRetry(e);
  }

  /**
   * Runs `fn` until it succeeds, fails with a non-retryable error, runs out of retries or of budget.
   * Throws the last endpoint's error (never a breaker's "circuit open" when an endpoint failed for real);
   * a TimeoutError naming that error when the budget ran out; an AbortedError when the caller's signal
   * aborted; a non-retryable TransportError naming every endpoint when each refused the connection
   * for `refusedTimeoutMs`.
   */
  async execute<T>(operation: string, fn: (ctx: AttemptContext<C>) => Promise<T>, opts: RemoteCallOptions): Promise<T> {
    /** The last failure an endpoint itself gave (a breaker's refusal is not one). */
    let last: OmniError | null = null;
    const ms = opts.timeoutMs;
    const deadline = new Deadline(ms, opts.signal, () => {
      // No endpoint tried in this call (every circuit was open): the failures that opened them say why.
      const cause = last ?? this.pool.endpoints.map((e) => e.lastFailure).find((e) => e !== null) ?? null;
      const after = cause ? ` (last error: ${cause.message})` : "";
      const note = opts.timeoutNote ? `; ${opts.timeoutNote}` : "";
      return new TimeoutError(`${operation} timed out after ${ms}ms${after}${note}`, { cause: cause ?? undefined, data: { method: operation, timeoutMs: ms } });
    });
    const tried = new Set<Endpoint<C>>();
    const unreachable = new UnreachableTracker(this.pool.endpoints.length, this.options.refusedTimeoutMs ?? DEFAULT_REFUSED_TIMEOUT_MS);
    const maxAttempts = (opts.retries ?? this.options.retries) + 1;
    const policy = retry(
      handleWhen((err) => isRetryable(err) && !deadline.signal.aborted),
      { maxAttempts: maxAttempts - 1, backoff: this.#backoff(operation, deadline, maxAttempts) },
    );
    try {
      return await policy.execute(async ({ attempt }) => {
        if (deadline.signal.aborted) throw deadline.signal.reason;
        let endpoint: Endpoint<C>;
        try {
          endpoint = this.pool.pick(tried);
        } catch (err) {
          const e = toOmniError(err);
          throw last && unreachable.hopeless() ? allUnreachableError(unreachable.failures, last) : e;
        }
        tried.add(endpoint);
        if (tried.size === this.pool.endpoints.length) tried.clear();
        try {
          const v = await endpoint.run(() => deadline.race(fn({ endpoint, deadline, attempt })), attempt > 0);
          unreachable.reached(endpoint.url);
          return v;
        } catch (err) {
          // The deadline's own reason (timeout or caller abort) is what the caller must see, not a side effect of it.
          if (deadline.signal.aborted) throw deadline.signal.reason as OmniError;
          const e = toOmniError(err);
          if (isCircuitOpen(e)) throw last && unreachable.hopeless() ? allUnreachableError(unreachable.failures, last) : e;
          last = e;
          if (!isUnreachable(e)) unreachable.reached(endpoint.url);
          else if (unreachable.refused(endpoint.url, e)) throw allUnreachableError(unreachable.failures, e);
          throw e;
        }
      }, deadline.signal);
    } catch (err) {
      // Out of retries on a breaker's refusal: the endpoint's own failure says what is wrong.
      if (last && err instanceof OmniError && isCircuitOpen(err) && !deadline.signal.aborted) throw last;
      throw err;
    } finally {
      deadline.dispose();
    }
  }

  /** Exponential decorrelated-jitter backoff, raised to a Retry-After when no other endpoint can take the retry, capped by the budget. */
  #backoff(operation: string, deadline: Deadline, maxAttempts: number): DelegateBackoff<IRetryBackoffContext<unknown>, IBackoff<unknown>> {
    const { backoffInitialMs, backoffMaxMs } = this.options;
    const expo = new ExponentialBackoff({ generator: decorrelatedJitterGenerator, initialDelay: backoffInitialMs, maxDelay: backoffMaxMs });
    return new DelegateBackoff((ctx, state?: IBackoff<unknown>) => {
      const next = state ? state.next(ctx) : expo.next();
      const error = toOmniError("error" in ctx.result ? ctx.result.error : ctx.result.value);
      const endpointUrl = typeof error.data.endpoint === "string" ? error.data.endpoint : undefined;
      const retryAfter = typeof error.data.retryAfterMs === "number" ? error.data.retryAfterMs : 0;
      const honour = retryAfter > 0 && !this.pool.hasAlternative(this.pool.byUrl(endpointUrl));
      const delayMs = Math.floor(Math.min(Math.max(next.duration, honour ? retryAfter : 0), backoffMaxMs, deadline.remaining()));
      this.report({ operation, attempt: ctx.attempt, maxAttempts, delayMs, endpoint: endpointUrl, error, reason: describeFailure(error) });
      return { delay: delayMs, state: next };
    });
  }
}

/**
 * Per call: which endpoints refused the connection (or were otherwise unreachable), since when, and
 * whether every endpoint has been unreachable for the allowed time (then retrying is pointless).
 */
class UnreachableTracker {
  readonly failures = new Map<string, OmniError>();
  readonly #since = new Map<string, number>();
  readonly #endpoints: number;
  readonly #graceMs: number;

  constructor(endpoints: number, graceMs: number) {
    this.#endpoints = endpoints;
    this.#graceMs = graceMs;
  }

  /** Records a refusal; true when it makes every endpoint hopeless. */
  refused(url: string, err: OmniError): boolean {
    if (!this.#since.has(url)) this.#since.set(url, Date.now());
    this.failures.set(url, err);
    return this.hopeless();
  }

  /** The endpoint answered (success or a failure of another kind): it can be reached. */
  reached(url: string): void {
    this.#since.delete(url);
    this.failures.delete(url);
  }

  hopeless(): boolean {
    if (this.#since.size < this.#endpoints) return false;
    return Date.now() - Math.min(...this.#since.values()) >= this.#graceMs;
  }
}
