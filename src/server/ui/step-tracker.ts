import type { DiffusionEngine } from "../../engine/engine.js";

/** Where one generation request stands, as the playground's progress poll reports it. */
export interface RequestProgress {
  requestId: string;
  /** `queued`: waiting in the engine's queue; `running`: at least one step done; `unknown`: not (or no longer) seen. */
  state: "queued" | "running" | "unknown";
  /** 1-based place in the engine's queue while queued, else 0. */
  queuePosition: number;
  /** Requests waiting in the engine's queue in all. */
  queueDepth: number;
  step: number;
  totalSteps: number | null;
}

/**
 * Remembers the last denoising step of recent requests (from the engine's `onStep` events), so a page can
 * poll a request's progress by id. The streamed OpenAI response carries only the few partial images a client
 * asked for; this adds the per-step count and the queue position without touching the OpenAI wire format.
 * Bounded: finished requests are dropped, and at most `capacity` are kept (oldest first out), so aborted
 * requests cannot grow it.
 */
export class StepTracker {
  readonly #engine: DiffusionEngine;
  readonly #steps = new Map<string, { step: number; totalSteps: number }>();
  readonly #capacity: number;
  readonly #sub: { dispose(): void };

  constructor(engine: DiffusionEngine, capacity = 1_024) {
    this.#engine = engine;
    this.#capacity = capacity;
    this.#sub = engine.onStep((e) => {
      if (e.step >= e.totalSteps) {
        this.#steps.delete(e.requestId);
        return;
      }
      // Re-inserting keeps the map in recency order, so the first key is the stalest.
      this.#steps.delete(e.requestId);
      this.#steps.set(e.requestId, { step: e.step, totalSteps: e.totalSteps });
      if (this.#steps.size > this.#capacity) this.#steps.delete(this.#steps.keys().next().value!);
    });
  }

  /** The progress of `requestId` now. */
  progress(requestId: string): RequestProgress {
    const queueDepth = this.#engine.stats.queued;
    const queuePosition = this.#engine.queuePosition(requestId);
    if (queuePosition > 0) return { requestId, state: "queued", queuePosition, queueDepth, step: 0, totalSteps: null };
    const s = this.#steps.get(requestId);
    if (s) return { requestId, state: "running", queuePosition: 0, queueDepth, step: s.step, totalSteps: s.totalSteps };
    return { requestId, state: "unknown", queuePosition: 0, queueDepth, step: 0, totalSteps: null };
  }

  /** Stops listening to the engine. */
  dispose(): void {
    this.#sub.dispose();
    this.#steps.clear();
  }
}
