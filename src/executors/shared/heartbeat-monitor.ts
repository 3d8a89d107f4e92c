import type { Readable } from "node:stream";
import { systemClock, type Clock, type ClockTimer } from "../../utils/clock.js";

/**
 * Parent side of a worker's heartbeat: watches the heartbeat pipe and calls `onMissed` once when no beat
 * arrived for `timeoutMs`. The deadline is armed by the first beat (before it, the start-up deadline
 * `workerStartTimeoutMs` is the one that applies) and pushed back by every later one. The timer is
 * unref'd: it never keeps the parent alive. Time comes from `clock` (tests pass a manual one).
 */
export class HeartbeatMonitor {
  readonly timeoutMs: number;
  #timer: ClockTimer | null = null;
  #lastBeat = 0;
  #stopped = false;
  readonly #onMissed: (silentMs: number) => void;
  readonly #stream: Readable;
  readonly #clock: Clock;
  readonly #onData = () => this.#beat();

  constructor(stream: Readable, timeoutMs: number, onMissed: (silentMs: number) => void, clock: Clock = systemClock) {
    this.timeoutMs = timeoutMs;
    this.#clock = clock;
    this.#stream = stream;
    this.#onMissed = onMissed;
    stream.on("data", this.#onData);
    // An error on the pipe means the process is going; its exit is reported elsewhere.
    stream.on("error", () => this.stop());
  }

  /** Beats seen so far have armed the deadline. */
  get armed(): boolean {
    return this.#timer !== null;
  }

  #beat(): void {
    if (this.#stopped) return;
    this.#lastBeat = this.#clock.now();
    if (this.#timer) {
      this.#timer.refresh();
      return;
    }
    this.#timer = this.#clock.timer(() => {
      if (this.#stopped) return;
      this.stop();
      this.#onMissed(this.#clock.now() - this.#lastBeat);
    }, this.timeoutMs);
  }

  /** Stops watching (the process exited, or is being stopped on purpose). Idempotent. */
  stop(): void {
    this.#stopped = true;
    this.#timer?.clear();
    this.#stream.off("data", this.#onData);
    // Keep draining, so a worker that still beats never blocks on a full pipe.
    this.#stream.resume();
  }
}
