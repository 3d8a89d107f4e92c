import type { Clock, ClockTimer } from "../../src/utils/clock.js";

/** A timer of a {@link ManualClock}: fires when `advance` moves the clock past `due`. */
export class ManualTimer implements ClockTimer {
  due: number;
  /** Re-arms seen so far (each heartbeat after the first is one). */
  refreshes = 0;
  cleared = false;
  readonly #clock: ManualClock;
  readonly #fn: () => void;
  readonly #ms: number;

  constructor(clock: ManualClock, fn: () => void, ms: number) {
    this.#clock = clock;
    this.#fn = fn;
    this.#ms = ms;
    this.due = clock.now() + ms;
  }

  refresh(): void {
    this.due = this.#clock.now() + this.#ms;
    this.cleared = false;
    this.refreshes++;
    this.#clock.notifyRefresh(this);
  }

  clear(): void {
    this.cleared = true;
  }

  /** Fires it if due (once: it stays cleared until refreshed). */
  fireIfDue(now: number): void {
    if (this.cleared || this.due > now) return;
    this.cleared = true;
    this.#fn();
  }
}

/**
 * A clock that moves only when the test says so: `advance(ms)` fires the timers it passes. Tests of
 * deadlines (heartbeats) use it to decide "time is up" themselves instead of racing the machine's load.
 */
export class ManualClock implements Clock {
  readonly timers: ManualTimer[] = [];
  #now: number;
  #waiters: { timer: ManualTimer | null; resolve: (t: ManualTimer) => void }[] = [];
  #armedWaiters: { count: number; resolve: () => void }[] = [];

  constructor(start = 1_000_000) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  timer(fn: () => void, ms: number): ClockTimer {
    const t = new ManualTimer(this, fn, ms);
    this.timers.push(t);
    this.#armedWaiters = this.#armedWaiters.filter((w) => (this.timers.length >= w.count ? (w.resolve(), false) : true));
    return t;
  }

  /** Moves time forward and fires, in due order, every timer it passed. */
  advance(ms: number): void {
    this.#now += ms;
    for (const t of [...this.timers].sort((a, b) => a.due - b.due)) t.fireIfDue(this.#now);
  }

  /** Resolves once at least `count` timers were created. */
  armed(count: number): Promise<void> {
    if (this.timers.length >= count) return Promise.resolve();
    return new Promise((resolve) => this.#armedWaiters.push({ count, resolve }));
  }

  /** Resolves at the next refresh of `timer`, or of any timer when none is given. */
  nextRefresh(timer: ManualTimer | null = null): Promise<ManualTimer> {
    return new Promise((resolve) => this.#waiters.push({ timer, resolve }));
  }

  /** @internal called by ManualTimer.refresh */
  notifyRefresh(t: ManualTimer): void {
    const due = this.#waiters.filter((w) => w.timer === null || w.timer === t);
    this.#waiters = this.#waiters.filter((w) => !due.includes(w));
    for (const w of due) w.resolve(t);
  }
}
