import { CircuitState, ConsecutiveBreaker, circuitBreaker, handleWhen, isBrokenCircuitError, type CircuitBreakerPolicy, type IBackoff } from "cockatiel";
import { AbortedError, OmniError, QueueFullError, TimeoutError, TransportError, toOmniError } from "../errors/omni-error.js";
import { systemClock, type Clock } from "../utils/clock.js";

/** Circuit state of one endpoint, as metrics and health pages show it. */
export type CircuitStateName = "closed" | "open" | "half-open" | "isolated";

/** Counters of one endpoint (a snapshot; {@link EndpointPool.metrics}). */
export interface EndpointMetrics {
  endpoint: string;
  state: CircuitStateName;
  /** Attempts running on this endpoint now (the balancer's load measure). */
  outstanding: number;
  /** Attempts started here (first tries and retries). */
  attempts: number;
  /** Attempts started here that were retries of an attempt elsewhere or here. */
  retries: number;
  successes: number;
  failures: number;
  /** Times the circuit opened. */
  breakerOpens: number;
  /** Mean duration of successful attempts, ms (0 before the first). */
  meanLatencyMs: number;
  lastError: string | null;
  /** While the circuit is open: ms until a half-open probe may go through (0 when it may now, or when closed). */
  probeDueInMs: number;
}

/** Breaker knobs shared by every endpoint of a pool. */
export interface BreakerOptions {
  /** Consecutive endpoint failures that open the circuit. */
  threshold: number;
  /** How long an open circuit rejects calls before one probe may go through (half-open), ms. */
  halfOpenAfterMs: number;
  /** Times the half-open wait (default: the real clock; tests pass a manual one). */
  clock?: Clock;
}

/**
 * cockatiel's half-open wait, decided by the endpoint's clock. cockatiel compares its own `Date.now()`
 * since opening with the backoff's `duration`; this duration answers "wait" (Infinity) or "probe now"
 * (-Infinity) from {@link Endpoint.msUntilProbe}, so one clock decides both what metrics show and
 * whether the breaker lets the probe through.
 */
class ProbeDue implements IBackoff<unknown> {
  readonly #msUntilProbe: () => number;
  constructor(msUntilProbe: () => number) {
    this.#msUntilProbe = msUntilProbe;
  }
  get duration(): number {
    return this.#msUntilProbe() > 0 ? Number.POSITIVE_INFINITY : Number.NEGATIVE_INFINITY;
  }
  next(): IBackoff<unknown> {
    return this;
  }
}

/**
 * Whether a failure says something about the endpoint (so it counts towards opening its circuit). The
 * caller's own deadline, an abort, an overloaded-but-alive server (429) and per-request errors do not.
 */
export function isEndpointFailure(err: unknown): boolean {
  if (!(err instanceof OmniError) || !err.retryable) return false;
  return !(err instanceof TimeoutError || err instanceof AbortedError || err instanceof QueueFullError);
}

const STATE_NAMES: Record<CircuitState, CircuitStateName> = {
  [CircuitState.Closed]: "closed",
  [CircuitState.Open]: "open",
  [CircuitState.HalfOpen]: "half-open",
  [CircuitState.Isolated]: "isolated",
};

/**
 * One remote endpoint: its transport client, its circuit breaker (a cockatiel policy over consecutive
 * endpoint failures, with a half-open probe) and its counters.
 */
export class Endpoint<C> {
  readonly url: string;
  readonly client: C;
  outstanding = 0;
  readonly #breaker: CircuitBreakerPolicy;
  readonly #halfOpenAfterMs: number;
  readonly #clock: Clock;
  #openedAt = 0;
  #lastFailure: OmniError | null = null;
  #m = { attempts: 0, retries: 0, successes: 0, failures: 0, breakerOpens: 0, latencySum: 0, lastError: null as string | null };

  constructor(url: string, client: C, opts: BreakerOptions) {
    this.url = url;
    this.client = client;
    this.#halfOpenAfterMs = opts.halfOpenAfterMs;
    this.#clock = opts.clock ?? systemClock;
    this.#breaker = circuitBreaker(handleWhen(isEndpointFailure), {
      breaker: new ConsecutiveBreaker(opts.threshold),
      halfOpenAfter: new ProbeDue(() => this.msUntilProbe()),
    });
    this.#breaker.onBreak(() => {
      this.#openedAt = this.#clock.now();
      this.#m.breakerOpens++;
    });
  }

  get state(): CircuitStateName {
    return STATE_NAMES[this.#breaker.state];
  }

  /** Closed, or open long enough that the next call is the half-open probe. A running probe makes it unavailable. */
  get available(): boolean {
    const s = this.#breaker.state;
    return s === CircuitState.Closed || (s === CircuitState.Open && this.msUntilProbe() === 0);
  }

  /** The last failure this endpoint itself gave (never a breaker's refusal), or null. */
  get lastFailure(): OmniError | null {
    return this.#lastFailure;
  }

  /** Milliseconds until an open circuit lets a probe through (0 when it would now, or is not open). */
  msUntilProbe(): number {
    if (this.#breaker.state !== CircuitState.Open) return 0;
    return Math.max(0, this.#openedAt + this.#halfOpenAfterMs - this.#clock.now());
  }

  /**
   * Runs one attempt through the breaker, counting it. A call refused by an open circuit becomes a
   * retryable TransportError (`data.circuitOpen`), so the retry policy fails over.
   */
  async run<T>(fn: () => Promise<T>, retry: boolean): Promise<T> {
    const started = performance.now();
    this.outstanding++;
    this.#m.attempts++;
    if (retry) this.#m.retries++;
    try {
      const v = await this.#breaker.execute(fn);
      this.#m.successes++;
      this.#m.latencySum += performance.now() - started;
      return v;
    } catch (err) {
      const e = isBrokenCircuitError(err)
        ? new TransportError(`circuit open for endpoint ${this.url}`, { cause: err, data: { endpoint: this.url, circuitOpen: true } })
        : toOmniError(err);
      this.#m.failures++;
      // A breaker's refusal says nothing new: the endpoint's own last failure stays the one reported.
      if (!isBrokenCircuitError(err)) {
        this.#m.lastError = `${e.code}: ${e.message}`;
        this.#lastFailure = e;
      }
      if (e.data.endpoint === undefined) (e.data as Record<string, unknown>).endpoint = this.url;
      throw e;
    } finally {
      this.outstanding--;
    }
  }

  metrics(): EndpointMetrics {
    const m = this.#m;
    return {
      endpoint: this.url,
      state: this.state,
      outstanding: this.outstanding,
      attempts: m.attempts,
      retries: m.retries,
      successes: m.successes,
      failures: m.failures,
      breakerOpens: m.breakerOpens,
      meanLatencyMs: m.successes ? m.latencySum / m.successes : 0,
      lastError: m.lastError,
      probeDueInMs: this.msUntilProbe(),
    };
  }
}

/**
 * The endpoints of one remote executor, with least-outstanding-requests balancing: the endpoint with the
 * fewest attempts in flight wins (ties rotate, so idle endpoints share the load), endpoints whose circuit
 * is open are skipped until their probe is due, and endpoints already tried by the same call are avoided
 * while an untried one is available (failover).
 */
export class EndpointPool<C> {
  readonly endpoints: readonly Endpoint<C>[];
  #rotation = 0;

  constructor(endpoints: Endpoint<C>[]) {
    this.endpoints = endpoints;
  }

  /** The endpoint for the next attempt, or a retryable TransportError when every circuit is open. */
  pick(tried: ReadonlySet<Endpoint<C>> = new Set()): Endpoint<C> {
    const available = this.endpoints.filter((e) => e.available);
    const untried = available.filter((e) => !tried.has(e));
    const pool = untried.length ? untried : available;
    if (!pool.length) {
      const wait = Math.min(...this.endpoints.map((e) => e.msUntilProbe()));
      const why = this.endpoints.map((e) => `${e.url}: ${e.metrics().lastError ?? e.state}`).join("; ");
      throw new TransportError(`no endpoint available: every circuit is open after repeated failures (${why})`, {
        data: { endpoints: this.endpoints.map((e) => e.url), circuitOpen: true, retryAfterMs: Math.max(1, wait) },
      });
    }
    const start = this.#rotation++ % pool.length;
    let best = pool[start]!;
    for (let i = 1; i < pool.length; i++) {
      const e = pool[(start + i) % pool.length]!;
      if (e.outstanding < best.outstanding) best = e;
    }
    return best;
  }

  /** True when an endpoint other than `ep` could take the next attempt now. */
  hasAlternative(ep: Endpoint<C> | undefined): boolean {
    return this.endpoints.some((e) => e !== ep && e.available);
  }

  byUrl(url: unknown): Endpoint<C> | undefined {
    return this.endpoints.find((e) => e.url === url);
  }

  metrics(): EndpointMetrics[] {
    return this.endpoints.map((e) => e.metrics());
  }
}
