/**
 * Test helpers of the webhook tests: a real HTTP receiver on 127.0.0.1:0 that records what arrives and
 * answers as the test scripts it (a status, a redirect, or never), and a latch on the dispatcher's log lines,
 * so a test waits for "attempt recorded" instead of sleeping.
 */
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";
import pino, { type Logger } from "pino";

/** One request as the receiver got it. */
export interface Received {
  headers: IncomingHttpHeaders;
  body: string;
  path: string;
}

/** What the receiver answers request `n` (0-based): a status, `{ redirect }`, or "hang" (never answers). */
export type Answer = number | { redirect: string } | "hang";

export class Receiver {
  readonly received: Received[] = [];
  #server: Server;
  #waiters: { count: number; resolve: () => void }[] = [];
  #hanging: ServerResponse[] = [];
  url = "";

  private constructor(answer: (n: number, r: Received) => Answer) {
    this.#server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const r: Received = { headers: req.headers, body: Buffer.concat(chunks).toString(), path: req.url ?? "" };
        const a = answer(this.received.length, r);
        this.received.push(r);
        this.#waiters = this.#waiters.filter((w) => (this.received.length >= w.count ? (w.resolve(), false) : true));
        if (a === "hang") this.#hanging.push(res);
        else if (typeof a === "number") res.writeHead(a).end("ok");
        else res.writeHead(302, { location: a.redirect }).end();
      });
    });
  }

  /** Starts one (on `port`, default a free one); `answer` defaults to 200 for everything. */
  static async start(answer: (n: number, r: Received) => Answer = () => 200, port = 0): Promise<Receiver> {
    const r = new Receiver(answer);
    await new Promise<void>((resolve) => r.#server.listen(port, "127.0.0.1", resolve));
    r.url = `http://127.0.0.1:${(r.#server.address() as AddressInfo).port}`;
    return r;
  }

  /** Resolves once `count` requests have arrived. */
  arrived(count: number): Promise<void> {
    if (this.received.length >= count) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ count, resolve }));
  }

  /** The JSON bodies received, parsed. */
  bodies(): Record<string, unknown>[] {
    return this.received.map((r) => JSON.parse(r.body) as Record<string, unknown>);
  }

  async close(): Promise<void> {
    for (const res of this.#hanging) res.destroy();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

/** A pino logger whose lines a test can wait for: `await logs.line((l) => l.msg === "webhook delivered")`. */
export class LogLatch {
  readonly lines: Record<string, unknown>[] = [];
  readonly logger: Logger;
  #waiters: { match: (l: Record<string, unknown>) => boolean; count: number; resolve: (l: Record<string, unknown>) => void }[] = [];

  constructor() {
    const sink = new Writable({
      write: (chunk: Buffer, _enc, cb) => {
        for (const text of chunk.toString().split("\n").filter(Boolean)) this.#push(JSON.parse(text) as Record<string, unknown>);
        cb();
      },
    });
    this.logger = pino({ level: "debug" }, sink);
  }

  /** Resolves with the `count`-th line (1-based, counting lines already seen) that matches. */
  line(match: (l: Record<string, unknown>) => boolean, count = 1): Promise<Record<string, unknown>> {
    const seen = this.lines.filter(match);
    if (seen.length >= count) return Promise.resolve(seen[count - 1]!);
    return new Promise((resolve) => this.#waiters.push({ match, count, resolve }));
  }

  /** Lines with this message. */
  msg(text: string): Record<string, unknown>[] {
    return this.lines.filter((l) => l.msg === text);
  }

  #push(l: Record<string, unknown>): void {
    this.lines.push(l);
    this.#waiters = this.#waiters.filter((w) => {
      const seen = this.lines.filter(w.match);
      if (seen.length < w.count) return true;
      w.resolve(seen[w.count - 1]!);
      return false;
    });
  }
}

/** Matches the log line of the `attempt`-th attempt of any delivery of `predictionId`. */
export const attemptOf = (predictionId: string, attempt: number) => (l: Record<string, unknown>) => l.predictionId === predictionId && l.attempt === attempt;
