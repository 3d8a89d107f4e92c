import { setTimeout as delay } from "node:timers/promises";
import type { Redis } from "ioredis";

/** One entry of BullMQ's event stream, its fields as strings (`event`, `jobId`, `returnvalue`, `data`, ...). */
export type QueueEvent = Record<string, string>;

/**
 * Reads a BullMQ queue's event stream (`bull:<queue>:events`) on a connection of its own, from where the
 * stream ended when it started. Written here rather than with BullMQ's QueueEvents so that stopping it
 * always releases the connection, even while Redis is unreachable (QueueEvents waits for a connection
 * that may never come), and so that no event between two reads is skipped.
 */
export class EventReader {
  readonly #conn: Redis;
  readonly #key: string;
  readonly #handle: (e: QueueEvent) => void;
  #lastId: string | null = null;
  #stopped = false;
  /** Resolves once the reader knows where the stream ends (Redis answered). */
  readonly ready: Promise<void>;

  constructor(conn: Redis, key: string, handle: (e: QueueEvent) => void) {
    this.#conn = conn;
    this.#key = key;
    this.#handle = handle;
    let resolveReady!: () => void;
    this.ready = new Promise((r) => (resolveReady = r));
    void this.#loop(resolveReady);
  }

  async #loop(ready: () => void): Promise<void> {
    while (!this.#stopped) {
      try {
        if (this.#lastId === null) {
          const last = await this.#conn.xrevrange(this.#key, "+", "-", "COUNT", 1);
          this.#lastId = last[0]?.[0] ?? "0-0";
          ready();
        }
        const res = await this.#conn.xread("BLOCK", 1_000, "STREAMS", this.#key, this.#lastId);
        for (const [, entries] of res ?? []) {
          for (const [id, fields] of entries) {
            this.#lastId = id;
            const e: QueueEvent = {};
            for (let i = 0; i + 1 < fields.length; i += 2) e[fields[i]!] = fields[i + 1]!;
            try {
              this.#handle(e);
            } catch (err) {
              process.emitWarning(`omni-diffusion queue event handler threw: ${(err as Error).message}`);
            }
          }
        }
      } catch {
        // Disconnected: ioredis reconnects; read on from the last id seen once it is back.
        if (!this.#stopped) await delay(200);
      }
    }
  }

  /** Stops reading (the caller disconnects the connection). */
  stop(): void {
    this.#stopped = true;
  }
}
