import type { OmniDiffusionRequest } from "../core/request.js";
import type { StepProgress } from "../core/progress.js";
import type { OmniRequestOutput } from "../core/request-output.js";

/** A request waiting in, or taken from, the engine's queue. */
export interface QueuedRequest {
  request: OmniDiffusionRequest;
  enqueuedAt: number;
  resolve: (out: OmniRequestOutput) => void;
  onProgress?: (p: StepProgress) => void;
  /** Decode a preview every N steps into `onProgress`'s `preview` (0 or absent: none). */
  previewEvery?: number;
  /** When the first denoising step of the request finished (performance.now()), once it has. */
  firstStepAt?: number;
  signal?: AbortSignal;
  onAbortSignal?: () => void;
}

/**
 * Requests that can share one batch: the same size, step count, sampler and guidance on/off
 * (unset fields resolve to the same model defaults, so null matches null).
 */
export function batchKey(r: OmniDiffusionRequest): string {
  const guided = r.guidanceScale === null ? "default" : r.guidanceScale > 1 ? "cfg" : "nocfg";
  return [r.width ?? "w", r.height ?? "h", r.numInferenceSteps ?? "steps", r.scheduler ?? "sched", guided].join("|");
}

/** FIFO queue that hands out batches of compatible requests, oldest first (no starvation). */
export class BatchQueue {
  #items: QueuedRequest[] = [];

  get size(): number {
    return this.#items.length;
  }

  push(q: QueuedRequest): void {
    this.#items.push(q);
  }

  has(requestId: string): boolean {
    return this.#items.some((q) => q.request.requestId === requestId);
  }

  /** 1-based place of a request in the queue (1: next to run), or 0 when it is not waiting here. */
  position(requestId: string): number {
    return this.#items.findIndex((q) => q.request.requestId === requestId) + 1;
  }

  /** The oldest request, left in the queue. */
  peek(): QueuedRequest | undefined {
    return this.#items[0];
  }

  /** Removes and returns the oldest request. */
  shift(): QueuedRequest | undefined {
    return this.#items.shift();
  }

  /** Removes and returns one request by id (for abort), or undefined. */
  remove(requestId: string): QueuedRequest | undefined {
    const i = this.#items.findIndex((q) => q.request.requestId === requestId);
    return i < 0 ? undefined : this.#items.splice(i, 1)[0];
  }

  /** The oldest request plus up to `max - 1` later ones with the same batch key (counting images, not requests). */
  takeBatch(maxImages: number): QueuedRequest[] {
    const head = this.#items[0];
    if (!head) return [];
    const key = batchKey(head.request);
    const batch: QueuedRequest[] = [];
    let images = 0;
    this.#items = this.#items.filter((q) => {
      const n = q.request.numOutputsPerPrompt;
      if (batchKey(q.request) === key && (batch.length === 0 || images + n <= maxImages)) {
        batch.push(q);
        images += n;
        return false;
      }
      return true;
    });
    return batch;
  }

  drain(): QueuedRequest[] {
    const all = this.#items;
    this.#items = [];
    return all;
  }
}
