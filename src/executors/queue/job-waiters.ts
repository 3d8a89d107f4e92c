import type { Job } from "bullmq";
import { DiffusionOutput } from "../../core/output.js";
import { OmniError, WorkerError, deserializeError, toOmniError, type SerializedError } from "../../errors/omni-error.js";
import type { StepProgress } from "../../core/progress.js";
import type { QueueEvent } from "./event-reader.js";
import type { JobProgress } from "../../protocol/queue-protocol.js";

interface Waiter {
  resolve: (out: DiffusionOutput) => void;
  onProgress?: (p: StepProgress) => void;
}

/**
 * The executor's side of job completion: one waiter per request id, settled exactly once from the queue's
 * event stream (`completed`, `failed`, `progress`, read by EventReader), from the job's stored state when it finished before
 * anyone listened, or by the executor (abort, deadline, lost connection). Whatever comes later for a settled
 * request is dropped, so a caller never sees a request twice.
 */
export class JobWaiters {
  #waiters = new Map<string, Waiter>();

  /** One entry of the queue's event stream (see EventReader). */
  handle(e: QueueEvent): void {
    if (!e.jobId) return;
    if (e.event === "completed") this.#settleFrom(e.jobId, parseJson(e.returnvalue));
    else if (e.event === "failed") this.settle(e.jobId, failedOutput(e.jobId, e.failedReason ?? "unknown reason"));
    else if (e.event === "progress") this.#progress(e.jobId, parseJson(e.data));
  }

  get size(): number {
    return this.#waiters.size;
  }

  /** Waits for `requestId`'s result; register before enqueueing so no event can be missed. */
  wait(requestId: string, onProgress?: (p: StepProgress) => void): Promise<DiffusionOutput> {
    return new Promise((resolve) => this.#waiters.set(requestId, { resolve, onProgress }));
  }

  has(requestId: string): boolean {
    return this.#waiters.has(requestId);
  }

  /** Settles from a job found already finished (a retry of a request that ran, or a race with the events). */
  settleFromJob(job: Job): void {
    if (job.finishedOn === undefined) return;
    if (job.failedReason && job.returnvalue == null) this.settle(job.id!, failedOutput(job.id!, job.failedReason));
    else this.#settleFrom(job.id!, job.returnvalue);
  }

  /** Gives `requestId` its result, once; later calls are ignored. */
  settle(requestId: string, out: DiffusionOutput): void {
    const w = this.#waiters.get(requestId);
    if (!w) return;
    this.#waiters.delete(requestId);
    w.resolve(out);
  }

  /** Fails every waiting request with `err` (the connection to Redis was lost, the executor shut down). */
  failAll(err: OmniError): void {
    for (const id of [...this.#waiters.keys()]) this.settle(id, errorOutput(id, err));
  }

  #settleFrom(jobId: string, returnvalue: unknown): void {
    if (!this.#waiters.has(jobId)) return;
    let out: DiffusionOutput;
    try {
      out = DiffusionOutput.fromDict(returnvalue);
    } catch (err) {
      out = errorOutput(jobId, new WorkerError(`job ${jobId} returned an unreadable result: ${toOmniError(err).message}`, { cause: err }));
    }
    this.settle(jobId, out);
  }

  #progress(jobId: string, data: unknown): void {
    const w = this.#waiters.get(jobId);
    if (!w?.onProgress || typeof data !== "object" || data === null) return;
    const p = data as JobProgress;
    if (typeof p.step !== "number" || typeof p.totalSteps !== "number") return;
    let preview: StepProgress["preview"];
    try {
      preview = Array.isArray(p.preview) ? DiffusionOutput.fromDict({ output: p.preview }).output : undefined;
    } catch {
      preview = undefined; // A preview is a courtesy: a bad one never fails the request.
    }
    w.onProgress({ requestId: jobId, step: p.step, totalSteps: p.totalSteps, ...(preview ? { preview } : {}) });
  }
}

/** A DiffusionOutput carrying only `requestId`'s error. */
export function errorOutput(requestId: string, err: OmniError): DiffusionOutput {
  return new DiffusionOutput({ errors: { [requestId]: err } });
}

/**
 * A job BullMQ gave up on (it stalled too often, or every attempt threw). Workers put a serialized OmniError
 * in the reason where they can; it is rebuilt into its class.
 */
function failedOutput(requestId: string, reason: string): DiffusionOutput {
  let err: OmniError;
  try {
    const s = JSON.parse(reason) as SerializedError;
    err = typeof s?.code === "string" && typeof s.name === "string" ? deserializeError(s) : new WorkerError(reason);
  } catch {
    err = new WorkerError(`job ${requestId} failed on the queue: ${reason}`, { data: { requestId } });
  }
  return errorOutput(requestId, err);
}

function parseJson(text: string | undefined): unknown {
  try {
    return text === undefined ? undefined : JSON.parse(text);
  } catch {
    return undefined;
  }
}
