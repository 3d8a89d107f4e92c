/**
 * A real webhook receiver for benchmarks (HTTP on 127.0.0.1:0): verifies each delivery's Standard Webhooks
 * signature with the server's secret (the `standardwebhooks` package, as a client would), dedupes by
 * `webhook-id` as the spec asks receivers to, and counts per prediction how many distinct `start` and
 * `completed` deliveries arrived. It answers 200 to everything.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Webhook } from "standardwebhooks";

const FINAL = new Set(["succeeded", "failed", "canceled", "aborted"]);
/** Bytes one delivery may have (a prediction object with its logs; inputs here carry no images). */
const MAX_BODY = 1 << 20;

/** What the receiver counted. */
export interface WebhookCounts {
  /** Requests received, retries and duplicates included. */
  requests: number;
  /** Distinct `webhook-id`s. */
  distinct: number;
  /** Requests whose signature did not verify. */
  badSignatures: number;
  /** Prediction id → distinct `completed` deliveries (body status final). */
  completed: Map<string, number>;
  /** Prediction id → distinct `start` deliveries (body status not final). */
  start: Map<string, number>;
}

export class WebhookCounter {
  readonly counts: WebhookCounts = { requests: 0, distinct: 0, badSignatures: 0, completed: new Map(), start: new Map() };
  url = "";
  #server: Server;
  #verifier: Webhook | null = null;
  #seen = new Set<string>();
  #waiter: { n: number; resolve: () => void } | null = null;

  constructor() {
    this.#server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      let bytes = 0;
      req.on("data", (c: Buffer) => {
        bytes += c.length;
        if (bytes > MAX_BODY) req.destroy();
        else chunks.push(c);
      });
      req.on("end", () => {
        this.#record(req.headers as Record<string, string>, Buffer.concat(chunks).toString("utf8"));
        res.writeHead(200).end("ok");
      });
    });
  }

  /** Listens; `secret` is the server's `whsec_...` (`GET /v1/webhooks/default/secret`). */
  async start(secret: string): Promise<void> {
    this.#verifier = new Webhook(secret);
    await new Promise<void>((resolve) => this.#server.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}/hook`;
  }

  /** Resolves once `n` predictions have a `completed` delivery, or after `ms` (whatever arrived is then counted). */
  completedFor(n: number, ms: number): Promise<void> {
    if (this.counts.completed.size >= n) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.#waiter = { n, resolve: () => (clearTimeout(t), resolve()) };
    });
  }

  close(): Promise<void> {
    this.#server.closeAllConnections();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }

  #record(headers: Record<string, string>, body: string): void {
    const c = this.counts;
    c.requests++;
    try {
      this.#verifier!.verify(body, headers);
    } catch {
      c.badSignatures++;
      return;
    }
    const id = headers["webhook-id"]!;
    if (this.#seen.has(id)) return; // a retry of a delivery already counted
    this.#seen.add(id);
    c.distinct++;
    const p = JSON.parse(body) as { id: string; status: string };
    const map = FINAL.has(p.status) ? c.completed : c.start;
    map.set(p.id, (map.get(p.id) ?? 0) + 1);
    if (this.#waiter && c.completed.size >= this.#waiter.n) this.#waiter.resolve();
  }
}

/** How many predictions of `ids` got exactly one, none, or more than one delivery in `per`. */
export function tally(ids: string[], per: Map<string, number>): { once: number; missing: number; more: number } {
  let once = 0;
  let missing = 0;
  let more = 0;
  for (const id of ids) {
    const n = per.get(id) ?? 0;
    if (n === 1) once++;
    else if (n === 0) missing++;
    else more++;
  }
  return { once, missing, more };
}
