import type { Redis } from "ioredis";
import { PredictionEvents, type PredictionEvent } from "./prediction-events.js";
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
 * what a disconnected replica misses; a stream there still ends, as its final state is read from the store.
 */
export class RedisPredictionEvents implements PredictionEventBus {
  readonly #local = new PredictionEvents();
  /** Streams open on other replicas, by prediction (a replica that dies with streams open leaves counts: a few extra previews). */
  readonly #remote = new Map<string, number>();

  constructor(
    readonly channel: string,
    readonly replicaId: string,
    readonly pub: Redis,
  ) {}

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
    this.#publish({ from: this.replicaId, id, listen: 1 });
    let on = true;
    return () => {
      if (!on) return;
      on = false;
      off();
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
}
