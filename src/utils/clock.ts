/**
 * Time as a dependency: `now()` and a re-armable one-shot timer. Code that decides by elapsed time (a
 * heartbeat deadline) takes a Clock, so tests drive it with a manual one instead of racing the machine's
 * load against real milliseconds.
 */
export interface Clock {
  /** Milliseconds, like `Date.now()`. */
  now(): number;
  /** Calls `fn` once after `ms`; never keeps the process alive. */
  timer(fn: () => void, ms: number): ClockTimer;
}

/** A pending one-shot timer of a {@link Clock}. */
export interface ClockTimer {
  /** Re-arms it to fire `ms` from now (like `Timeout.refresh()`), also after it fired. */
  refresh(): void;
  clear(): void;
}

/** The real clock: `Date.now()` and unref'd `setTimeout`s. */
export const systemClock: Clock = {
  now: () => Date.now(),
  timer(fn, ms) {
    const t = setTimeout(fn, ms);
    t.unref();
    return { refresh: () => void t.refresh(), clear: () => clearTimeout(t) };
  },
};
