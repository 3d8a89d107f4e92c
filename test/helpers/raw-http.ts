/** Raw TCP clients for what fetch cannot do: trickle bytes, send duplicate headers, watch the socket close. */
import { connect, type Socket } from "node:net";
import { once } from "node:events";

/** A connected socket that records everything received and resolves `closed` (with it) when the server closes. */
export class RawClient {
  readonly socket: Socket;
  received = "";
  readonly closed: Promise<string>;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.setEncoding("latin1");
    socket.on("data", (d: string) => (this.received += d));
    socket.on("error", () => undefined); // a reset is a close too
    this.closed = once(socket, "close").then(() => this.received);
  }

  static async open(url: string): Promise<RawClient> {
    const { hostname, port } = new URL(url);
    const socket = connect({ host: hostname, port: Number(port) });
    const client = new RawClient(socket);
    await Promise.race([once(socket, "connect"), client.closed]);
    return client;
  }

  write(text: string | Buffer): void {
    if (!this.socket.destroyed) this.socket.write(text);
  }

  /** Resolves once the received text matches `re` (or rejects when the socket closes first). */
  async waitFor(re: RegExp): Promise<string> {
    while (!re.test(this.received)) {
      if (this.socket.destroyed) throw new Error(`socket closed before ${re}; received: ${this.received.slice(0, 300)}`);
      await Promise.race([once(this.socket, "data"), this.closed]);
    }
    return this.received;
  }

  /** Writes one byte of `text` every `everyMs` until the server closes the socket; resolves with what it answered. */
  trickle(text: string, everyMs: number): Promise<string> {
    let i = 0;
    const t = setInterval(() => {
      if (i < text.length) this.write(text[i++]!);
    }, everyMs);
    return this.closed.finally(() => clearInterval(t));
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** An HTTP/1.1 request as text. */
export function rawRequest(method: string, path: string, headers: [string, string][], body = ""): string {
  const lines = [`${method} ${path} HTTP/1.1`, "Host: 127.0.0.1", ...headers.map(([k, v]) => `${k}: ${v}`)];
  if (body) lines.push(`Content-Length: ${Buffer.byteLength(body)}`);
  return `${lines.join("\r\n")}\r\n\r\n${body}`;
}
