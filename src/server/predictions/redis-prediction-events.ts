import type { Redis } from "ioredis";
import { PredictionEvents, type PredictionEvent } from "./prediction-events.js";
import { isFinal, type PredictionRecord } from "./prediction-record.js";
import type { PredictionEventBus } from "./prediction-store-api.js";

/** What travels on the events channel: an event of a prediction, or a stream opening/closing somewhere. */
type Message =
  | { from: string; id: string; e: Exclude<PredictionEvent, { type: "preview" }> }
  | { from: string; id: string; preview: { index: number; png: string } }
  | { from: string; id: string; listen: 1 | -1 };

/**
 * Prediction events across serve replicas: the runner's events are published on one Redis channel and every
 * replica hands them to its own open streams, so `urls.stream` works from any replica. Stream counts travel
 * too: the replica running a prediction makes previews only while some replica streams it. Pub/sub loses
 * what a disconnected replica misses, so the outcome is also read from the store: once a stream subscribes
 * (it may have read the prediction just before it ended) and after each reconnection.
 */
export class RedisPredictionEvents implements PredictionEventBus {
  readonly #local = new PredictionEvents();
  /** Streams open on other replicas, by prediction (a replica that dies with streams open leaves counts: a few extra previews). */
  readonly #remote = new Map<string, number>();
  /** Streams open here, by prediction: each ends once it has its outcome. */
  readonly #open = new Map<string, Set<(e: PredictionEvent) => void>>();

  constructor(
    readonly channel: string,
    readonly replicaId: string,
    readonly pub: Redis,
    readonly lookup: (id: string) => Promise<PredictionRecord | null>,
  ) {}

  /** Ends the streams here whose prediction is final in the store (the subscriber reconnected: it may have missed that). */
  catchUp(): void {
    for (const [id, fns] of this.#open) for (const fn of [...fns]) this.#settle(id, fn);
  }

  /** Gives one stream the outcome of its prediction when the store has it final. */
  #settle(id: string, fn: (e: PredictionEvent) => void): void {
    void this.lookup(id)
      .then((rec) => {
        if (!rec || !isFinal(rec.status) || !this.#open.get(id)?.has(fn)) return;
        if (rec.output) fn({ type: "output", names: rec.output });
        fn({ type: "done", status: rec.status, error: rec.error });
      })
      .catch(() => undefined); // Redis down: the next reconnection catches up
  }

  /** Feeds one message of {@link channel}, as the subscriber connection received it. */
  receive(raw: string): void {
    let m: Message;
    try {
      m = JSON.parse(raw) as Message;
    } catch {
      return;
    }
    if (m.from === this.replicaId || typeof m.id !== "string") return;
    if ("listen" in m) {
      const n = Math.max(0, (this.#remote.get(m.id) ?? 0) + m.listen);
      if (n === 0) this.#remote.delete(m.id);
      else this.#remote.set(m.id, n);
    } else if ("preview" in m) this.#local.emit(m.id, { type: "preview", index: m.preview.index, png: Buffer.from(m.preview.png, "base64") });
    else {
      if (m.e.type === "done") this.#remote.delete(m.id);
      this.#local.emit(m.id, m.e);
    }
  }

  subscribe(id: string, fn: (e: PredictionEvent) => void): () => void {
    const off = this.#local.subscribe(id, fn);
    let set = this.#open.get(id);
    if (!set) this.#open.set(id, (set = new Set()));
    set.add(fn);
    this.#publish({ from: this.replicaId, id, listen: 1 });
    this.#settle(id, fn);
    let on = true;
    return () => {
      if (!on) return;
      on = false;
      off();
      set.delete(fn);
      if (set.size === 0 && this.#open.get(id) === set) this.#open.delete(id);
      this.#publish({ from: this.replicaId, id, listen: -1 });
    };
  }

  emit(id: string, e: PredictionEvent): void {
    this.#local.emit(id, e);
    if (e.type === "preview") this.#publish({ from: this.replicaId, id, preview: { index: e.index, png: e.png.toString("base64") } });
    else this.#publish({ from: this.replicaId, id, e });
  }

  count(id: string): number {
    return this.#local.count(id) + (this.#remote.get(id) ?? 0);
  }

  #publish(m: Message): void {
    // Best effort, like the stream itself: a lost event costs a stream a line, never a prediction.
    this.pub.publish(this.channel, JSON.stringify(m)).catch(() => undefined);
  }

  takeFinalPreview(id: string): PredictionEvent | undefined {
    return this.#local.takeFinalPreview(id);
  }
}
