import { ConstantBackoff, DelegateBackoff, ExponentialBackoff, handleAll, handleWhen, noJitterGenerator, retry, type IRetryBackoffContext, type RetryPolicy } from "cockatiel";

/** Knobs of {@link restartPolicy}. */
export interface RestartPolicyOptions {
  /** Most process starts per death (>= 1; the caller does not restart at all for 0). */
  attempts: number;
  /** Wait before the second start, ms; doubled before each later one (no jitter, no cap). */
  backoffMs: number;
}

/**
 * How a local executor restarts a dead worker process: every failed start (a load error, no READY within
 * the start deadline) is retried after `backoffMs × 2^(n-1)`, up to `attempts` starts in all; the last
 * start's error is thrown. No jitter: the starts are one process's, not a crowd's, and a fixed schedule
 * is easier to read in logs. The function decides itself when to stop early (e.g. at shutdown): it then
 * resolves instead of throwing.
 *
 * @example
 * ```ts
 * const policy = restartPolicy({ attempts: 3, backoffMs: 250 });
 * await policy.execute(async ({ attempt }) => {
 *   if (attempt > 5) throw new Error("never reached: 3 starts at most");
 * });
 * ```
 */
export function restartPolicy(opts: RestartPolicyOptions): RetryPolicy {
  return retry(handleAll, {
    maxAttempts: Math.max(0, opts.attempts - 1),
    backoff: new ExponentialBackoff({ generator: noJitterGenerator, initialDelay: opts.backoffMs, maxDelay: Number.POSITIVE_INFINITY }),
  });
}

/**
 * How a local executor retries a request whose worker died under it: at once (the request moves to
 * another, live rank, so there is nothing to wait for), up to `retries` times, and only while `shouldRetry`
 * says the failure is a worker death worth retrying (not a caller's abort, a deadline, or a shutdown).
 *
 * @example
 * ```ts
 * import { WorkerDiedError } from "../errors/omni-error.js";
 * const policy = workerRetryPolicy(1, (e) => e instanceof WorkerDiedError);
 * const out = await policy.execute(async ({ attempt }) => (attempt === 0 ? "first rank" : "next rank"));
 * ```
 */
export function workerRetryPolicy(retries: number, shouldRetry: (err: Error) => boolean): RetryPolicy {
  return retry(handleWhen(shouldRetry), { maxAttempts: retries });
}

/**
 * A start-up poll: the check runs again while `keepGoing(err)` says waiting may still help (the executor is
 * open and its start deadline leaves room for another round); the last error is thrown otherwise. Used by
 * executors that wait for a first live worker or endpoint (the queue executor, the remote executors). The
 * wait is `intervalMs` every round, or, with `maxIntervalMs` above it, doubles from `intervalMs` up to
 * `maxIntervalMs` ({@link pollDelayMs}); no jitter: one process's start-up, not a crowd's.
 *
 * @example
 * ```ts
 * const until = Date.now() + 5_000;
 * const poll = pollPolicy(100, () => Date.now() + 100 < until);
 * await poll.execute(async ({ attempt }) => {
 *   if (attempt < 2) throw new Error("no worker yet");
 * });
 * ```
 */
export function pollPolicy(intervalMs: number, keepGoing: (err: Error) => boolean, maxIntervalMs = intervalMs): RetryPolicy {
  const backoff = maxIntervalMs > intervalMs ? new DelegateBackoff((ctx: IRetryBackoffContext<unknown>) => pollDelayMs(intervalMs, maxIntervalMs, ctx.attempt)) : new ConstantBackoff(intervalMs);
  return retry(handleWhen(keepGoing), { maxAttempts: Number.POSITIVE_INFINITY, backoff });
}

/** {@link pollPolicy}'s wait after its `round`-th failed round (1-based), ms. */
export function pollDelayMs(intervalMs: number, maxIntervalMs: number, round: number): number {
  return Math.min(intervalMs * 2 ** (round - 1), Math.max(maxIntervalMs, intervalMs));
}
