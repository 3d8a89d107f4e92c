import type { GeneratedImage } from "../../src/core/output.js";
import { OmniDiffusionRequest, type OmniDiffusionRequestInit } from "../../src/core/request.js";
import type { StepProgress } from "../../src/pipelines/types.js";

/** Largest per-channel difference between two RGB images of the same size. */
export function pixelDiff(a: GeneratedImage, b: GeneratedImage): number {
  if (a.width !== b.width || a.height !== b.height) return Infinity;
  let max = 0;
  for (let i = 0; i < a.data.length; i++) max = Math.max(max, Math.abs(a.data[i]! - b.data[i]!));
  return max;
}

/** True when every byte of the two images is equal. */
export function identical(a: GeneratedImage, b: GeneratedImage): boolean {
  return a.width === b.width && a.height === b.height && a.data.every((v, i) => v === b.data[i]);
}

/** A one-shot latch: `open(v)` resolves `wait`; rejects after `ms` so a broken test fails instead of hanging. */
export function latch<T = void>(what: string, ms = 50_000): { wait: Promise<T>; open: (v: T) => void } {
  let open!: (v: T) => void;
  let t: NodeJS.Timeout;
  const wait = new Promise<T>((resolve, reject) => {
    t = setTimeout(() => reject(new Error(`latch "${what}" not opened within ${ms}ms`)), ms);
    open = (v) => {
      clearTimeout(t);
      resolve(v);
    };
  });
  return { wait, open };
}

/** A request with the test defaults (32x32, seeded); `id` doubles as the request id. */
export function request(id: string, init: Partial<OmniDiffusionRequestInit> = {}): OmniDiffusionRequest {
  return new OmniDiffusionRequest({ prompt: "a red circle on a blue background", width: 32, height: 32, seed: 1, numInferenceSteps: 4, ...init, requestId: id });
}

/** The same request under another id (for the run-alone reference). */
export function twin(r: OmniDiffusionRequest, id: string): OmniDiffusionRequest {
  return OmniDiffusionRequest.fromDict({ ...r.toDict(), request_id: id });
}

/** Progress events in arrival order, with a latch per (request, step). */
export class ProgressLog {
  readonly events: StepProgress[] = [];
  readonly done: string[] = [];
  #waiters: { id: string; step: number; open: () => void }[] = [];

  readonly onProgress = (p: StepProgress): void => {
    this.events.push(p);
    for (const w of [...this.#waiters]) {
      if (w.id === p.requestId && p.step >= w.step) {
        this.#waiters.splice(this.#waiters.indexOf(w), 1);
        w.open();
      }
    }
  };

  /** Resolves once `id` reported step `step` (or later). */
  reached(id: string, step: number): Promise<void> {
    if (this.events.some((e) => e.requestId === id && e.step >= step)) return Promise.resolve();
    const l = latch(`${id} step ${step}`);
    this.#waiters.push({ id, step, open: () => l.open() });
    return l.wait;
  }

  /** Index in `events` of the first event of `id` at `step` or later (-1 if none). */
  indexOf(id: string, step = 1): number {
    return this.events.findIndex((e) => e.requestId === id && e.step >= step);
  }

  of(id: string): StepProgress[] {
    return this.events.filter((e) => e.requestId === id);
  }
}
