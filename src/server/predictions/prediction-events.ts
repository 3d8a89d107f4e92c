import type { PredictionStatus } from "./prediction-record.js";

/** What a prediction's stream subscribers hear as it runs. */
export type PredictionEvent =
  | { type: "logs"; text: string }
  /** A cheap preview of the image being denoised (PNG). */
  | { type: "preview"; index: number; png: Buffer }
  | { type: "output"; names: string[] }
  | { type: "done"; status: PredictionStatus; error: string | null };

type Listener = (e: PredictionEvent) => void;

/** How many ended predictions' last previews wait for a late stream (the oldest is forgotten first). */
const UNHEARD_PREVIEWS = 64;

/**
 * Per-prediction listeners, in memory: a stream subscribes while its connection is open. The latest preview of
 * a running prediction is kept until it ends, and a new subscriber gets it first: a stream opened just after
 * the create call (the playground's) still shows the image being denoised. Bounded by the running predictions.
 */
export class PredictionEvents {
  readonly #listeners = new Map<string, Set<Listener>>();
  readonly #latestPreview = new Map<string, PredictionEvent>();
  /**
   * The last preview of predictions that ended with no stream open: a stream that connects just after a fast run
   * ended (the playground opens it after the create call) still shows the image being denoised. Oldest first.
   */
  readonly #unheardPreviews = new Map<string, PredictionEvent>();

  subscribe(id: string, fn: Listener): () => void {
    let set = this.#listeners.get(id);
    if (!set) this.#listeners.set(id, (set = new Set()));
    set.add(fn);
    const preview = this.#latestPreview.get(id);
    if (preview) fn(preview);
    return () => {
      set.delete(fn);
      if (set.size === 0 && this.#listeners.get(id) === set) this.#listeners.delete(id);
    };
  }

  emit(id: string, e: PredictionEvent): void {
    if (e.type === "preview") this.#latestPreview.set(id, e);
    else if (e.type === "done") {
      const last = this.#latestPreview.get(id);
      this.#latestPreview.delete(id);
      if (last && !this.count(id)) {
        this.#unheardPreviews.set(id, last);
        if (this.#unheardPreviews.size > UNHEARD_PREVIEWS) this.#unheardPreviews.delete(this.#unheardPreviews.keys().next().value!);
      }
    }
    for (const fn of [...(this.#listeners.get(id) ?? [])]) fn(e);
  }

  takeFinalPreview(id: string): PredictionEvent | undefined {
    const e = this.#unheardPreviews.get(id);
    this.#unheardPreviews.delete(id);
    return e;
  }

  /** Listeners of `id` (a stream that is open). */
  count(id: string): number {
    return this.#listeners.get(id)?.size ?? 0;
  }
}

/** Replicate-style progress line (tqdm's format, which `parseProgressFromLogs` of the official client reads). */
export function progressLine(step: number, total: number): string {
  const frac = total > 0 ? Math.min(1, step / total) : 0;
  const filled = Math.round(frac * 10);
  return `${String(Math.round(frac * 100)).padStart(3)}%|${"█".repeat(filled)}${" ".repeat(10 - filled)}| ${step}/${total}\n`;
}
