/**
 * When to try a failed delivery again: exponential backoff (1 s, 2 s, 4 s, ... capped at 10 min) with up to
 * +25% jitter, so receivers that come back are not hit by every sender at once, for at least `windowMs`
 * (1 h) after the first attempt. Jitter only lengthens a delay, so the window is always honoured.
 */
export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  /** Keep retrying until this long after the first attempt; the last attempt is at or past it. */
  windowMs: number;
  /** In [0, 1); injectable so tests can fix the jitter. */
  random: () => number;
}

export const DEFAULT_BACKOFF: Omit<BackoffOptions, "random"> = { initialMs: 1_000, maxMs: 600_000, windowMs: 3_600_000 };

/**
 * The delay before attempt `attempts + 1`, given `attempts` failed so far and the time since the first;
 * null: give up (the window has passed).
 */
export function nextDelay(attempts: number, elapsedMs: number, o: BackoffOptions): number | null {
  if (elapsedMs >= o.windowMs) return null;
  const base = Math.min(o.maxMs, o.initialMs * 2 ** Math.min(attempts - 1, 30));
  return Math.round(base * (1 + 0.25 * o.random()));
}
