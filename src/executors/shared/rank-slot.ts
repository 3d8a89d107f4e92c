import type { OmniError } from "../../errors/omni-error.js";
import type { WorkerExit, WorkerProcess } from "./worker-process.js";

/** Life cycle of one rank: starting → ready ⇄ restarting; failed once restarts are exhausted; closed at shutdown. */
export type RankStatus = "starting" | "ready" | "restarting" | "failed" | "closed";

interface Waiter {
  resolve: (p: WorkerProcess) => void;
  reject: (e: unknown) => void;
  signal?: AbortSignal;
  onAbort: () => void;
}

/**
 * One rank of the multi-process executor: whichever worker process currently serves it, its status, and
 * the work outstanding on it. Callers that need the rank while it (re)starts wait in `whenReady`.
 */
export class RankSlot {
  readonly rank: number;
  proc: WorkerProcess | null = null;
  /** Estimated outstanding work (images × steps) of the requests dispatched to this rank. */
  load = 0;
  /** How the previous process of this rank ended, when it did. */
  lastExit: WorkerExit | null = null;
  /** Why the rank is failed or closed. */
  failure: OmniError | null = null;
  #status: RankStatus = "starting";
  #waiters = new Set<Waiter>();

  constructor(rank: number) {
    this.rank = rank;
  }

  get status(): RankStatus {
    return this.#status;
  }

  /** The serving process, or a wait for it (cancelled by `signal`); throws the failure of a failed or closed rank. */
  whenReady(signal?: AbortSignal): Promise<WorkerProcess> {
    if (this.#status === "ready" && this.proc) return Promise.resolve(this.proc);
    if (this.#status === "failed" || this.#status === "closed") return Promise.reject(this.failure);
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    return new Promise<WorkerProcess>((resolve, reject) => {
      const w: Waiter = {
        resolve,
        reject,
        signal,
        onAbort: () => {
          this.#waiters.delete(w);
          reject(signal!.reason as Error);
        },
      };
      signal?.addEventListener("abort", w.onAbort, { once: true });
      this.#waiters.add(w);
    });
  }

  /** A process is starting for this rank (first start or a restart after `exit`). */
  starting(proc: WorkerProcess, restart: boolean): void {
    this.proc = proc;
    this.#status = restart ? "restarting" : "starting";
  }

  /** The current process died; a restart follows. */
  died(exit: WorkerExit): void {
    this.lastExit = exit;
    this.proc = null;
    this.#status = "restarting";
  }

  markReady(proc: WorkerProcess): void {
    this.proc = proc;
    this.#status = "ready";
    this.#settle((w) => w.resolve(proc));
  }

  /** No process will serve this rank again (restarts exhausted, or shutdown). */
  markFailed(err: OmniError, status: "failed" | "closed" = "failed"): void {
    this.failure = err;
    this.#status = status;
    this.#settle((w) => w.reject(err));
  }

  #settle(fn: (w: Waiter) => void): void {
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const w of waiters) {
      w.signal?.removeEventListener("abort", w.onAbort);
      fn(w);
    }
  }
}
