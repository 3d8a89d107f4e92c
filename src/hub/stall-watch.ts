import { TransportError } from "../errors/omni-error.js";
import { systemClock, type Clock, type ClockTimer } from "../utils/clock.js";

/** How long a pull waits for any byte from the Hub before giving up (huggingface_hub's read timeout is 10 s; a CDN can be slower). */
export const DEFAULT_STALL_TIMEOUT_MS = 60_000;

/**
 * A no-progress deadline for a whole pull: every sign of progress (an answer's headers, a chunk of a body, a chunk
 * of a resumed file hashed) re-arms it, and when it runs out its {@link signal} aborts with a retryable
 * {@link TransportError} naming what was being fetched. Without it a hub that stops sending holds a pull for as long
 * as undici's 300 s timeouts allow, per request and per resume.
 */
export class StallWatch {
  readonly #controller = new AbortController();
  readonly #timer: ClockTimer;
  readonly #ms: number;
  #what = "the listing";
  #partial = false;

  constructor(ms: number = DEFAULT_STALL_TIMEOUT_MS, clock: Clock = systemClock) {
    this.#ms = ms;
    this.#timer = clock.timer(() => this.#fire(), ms);
  }

  /** Aborted, with the stall's TransportError as its reason, once the deadline passes without progress. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** Names what is fetched from now on (for the error), and counts as progress. `partial`: a stall there keeps a resumable file. */
  fetching(what: string, partial = false): void {
    this.#what = what;
    this.#partial = partial;
    this.progress();
  }

  /** Something arrived: the deadline starts over. */
  progress(): void {
    if (!this.#controller.signal.aborted) this.#timer.refresh();
  }

  /** The pull is over (done or failed): no more deadline. */
  stop(): void {
    this.#timer.clear();
  }

  #fire(): void {
    const s = +(this.#ms / 1000).toFixed(3);
    const resume = this.#partial ? "run the same pull again to resume it" : "run the same pull again";
    this.#controller.abort(
      new TransportError(`the Hub sent nothing for ${s} s while pulling ${this.#what}; check the connection (or raise --stall-timeout) and ${resume}`, {
        retryable: true,
        data: { stallTimeoutMs: this.#ms, file: this.#what },
      }),
    );
  }
}
