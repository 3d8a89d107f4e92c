import type { Readable } from "node:stream";

/**
 * Parent side of a worker's heartbeat: watches the heartbeat pipe and calls `onMissed` once when no beat
 * arrived for `timeoutMs`. The deadline is armed by the first beat (before it, the start-up deadline
 * `workerStartTimeoutMs` is the one that applies) and pushed back by every later one. The timer is
 * unref'd: it never keeps the parent alive.
 */
export class HeartbeatMonitor {
  readonly timeoutMs: number;
  #timer: NodeJS.Timeout | null = null;
  #lastBeat = 0;
  #stopped = false;
  readonly #onMissed: (silentMs: number) => void;
  readonly #stream: Readable;
  readonly #onData = () => this.#beat();

  constructor(stream: Readable, timeoutMs: number, onMissed: (silentMs: number) => void) {
    this.timeoutMs = timeoutMs;
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
    this.#lastBeat = Date.now();
    if (this.#timer) {
      this.#timer.refresh();
      return;
    }
    this.#timer = setTimeout(() => {
      if (this.#stopped) return;
      this.stop();
      this.#onMissed(Date.now() - this.#lastBeat);
    }, this.timeoutMs);
    this.#timer.unref();
  }

  /** Stops watching (the process exited, or is being stopped on purpose). Idempotent. */
  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#stream.off("data", this.#onData);
    // Keep draining, so a worker that still beats never blocks on a full pipe.
    this.#stream.resume();
  }
}
