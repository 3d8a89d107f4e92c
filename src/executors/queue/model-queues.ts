import type { Queue } from "bullmq";
import type { Redis, RedisOptions } from "ioredis";
import { modelQueueName, type QueueSdk } from "../../protocol/queue-protocol.js";
import { EventReader, type QueueEvent } from "./event-reader.js";

/** The BullMQ and ioredis classes, loaded lazily by the executor (protocol/queue-protocol.ts `loadQueueSdk`). */
type Sdk = Pick<QueueSdk, "Queue" | "Redis">;

/**
 * The queue executor's per-model queues (issue 24): a request that names a model goes to that model's queue, which
 * only workers serving the model pull (protocol/queue-protocol.ts `modelQueueName`). Each queue is made on its
 * first request, with an event reader on a connection of its own (a blocking read serves one stream here).
 */
export class ModelQueues {
  readonly #base: string;
  readonly #sdk: Sdk;
  readonly #client: Redis;
  readonly #redis: RedisOptions;
  readonly #handle: (e: QueueEvent) => void;
  readonly #queues = new Map<string, { queue: Queue; events: EventReader; conn: Redis; ready: Promise<void> }>();

  constructor(base: string, sdk: Sdk, client: Redis, redis: RedisOptions, handle: (e: QueueEvent) => void) {
    this.#base = base;
    this.#sdk = sdk;
    this.#client = client;
    this.#redis = redis;
    this.#handle = handle;
  }

  /** The queue of `model`, its event reader listening before the first job is added. */
  async get(model: string): Promise<Queue> {
    let q = this.#queues.get(model);
    if (!q) {
      const queue = new this.#sdk.Queue(modelQueueName(this.#base, model), { connection: this.#client, streams: { events: { maxLen: 2_000 } } });
      queue.on("error", () => undefined);
      const conn = new this.#sdk.Redis(this.#redis);
      conn.on("error", () => undefined);
      const events = new EventReader(conn, queue.keys.events!, this.#handle);
      q = { queue, events, conn, ready: events.ready };
      this.#queues.set(model, q);
    }
    await q.ready;
    return q.queue;
  }

  /** Jobs waiting on every model queue this executor has fed (its `maxWaiting` bounds them with the base queue's). */
  async waitingCount(): Promise<number> {
    const counts = await Promise.all([...this.#queues.values()].map((q) => q.queue.getWaitingCount()));
    return counts.reduce((a, b) => a + b, 0);
  }

  /** Stops every reader and closes the queues (bounded by the caller). */
  async close(): Promise<void> {
    const queues = [...this.#queues.values()];
    for (const q of queues) q.events.stop();
    // The readers' connections are ours: cut at once. Cut after the queues' close, they were never cut when that
    // close outlived the caller's bound (a loaded machine, Redis gone), and kept reconnecting: the process never ended.
    for (const q of queues) q.conn.disconnect();
    await Promise.allSettled(queues.map((q) => q.queue.close()));
  }
}
