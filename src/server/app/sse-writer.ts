import type { ServerResponse } from "node:http";

/**
 * Server-Sent Events on a raw response (fastify's `reply.hijack()`): `event:` + one `data:` line of JSON
 * per event. Events sent before `open()` wait for it; writes after the client went away are dropped, so
 * callers need not check between events.
 */
export class SseWriter {
  readonly #res: ServerResponse;
  #open = false;
  #early: string[] = [];

  constructor(res: ServerResponse) {
    this.#res = res;
  }

  /** True once the response ended or the connection closed. */
  get closed(): boolean {
    return this.#res.writableEnded || this.#res.destroyed;
  }

  /** Sends the 200 and the event-stream headers. */
  open(headers: Record<string, string> = {}): void {
    if (this.#open || this.closed) return;
    this.#open = true;
    this.#res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache, no-transform",
      // No `connection` header: Node keeps the connection or closes it as the client asked (a forced
      // keep-alive held sockets of clients that sent `Connection: close`).
      // nginx and similar proxies buffer responses unless told otherwise; events must arrive as they happen.
      "x-accel-buffering": "no",
      ...headers,
    });
    this.#res.flushHeaders();
    for (const chunk of this.#early) this.#res.write(chunk);
    this.#early = [];
  }

  /** Sends one event whose data is `data` as JSON. */
  event(name: string, data: unknown): void {
    if (this.closed) return;
    const chunk = `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;
    if (this.#open) this.#res.write(chunk);
    else this.#early.push(chunk);
  }

  /** Ends the stream. */
  end(): void {
    if (!this.closed) this.#res.end();
  }
}
