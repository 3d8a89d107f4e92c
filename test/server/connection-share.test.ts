/**
 * Issue 21 item 7: one client must not hold every connection `--max-connections` allows. Connections beyond
 * an address's share (`--max-connections-per-address`, default a quarter of the cap) are closed as soon as
 * they are accepted, while other addresses still get in.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { connect, type Socket } from "node:net";
import { after, before, describe, test } from "node:test";
import { OmniServer, startServer } from "../../src/index.js";
import { DEFAULT_HTTP_LIMITS, perAddressLimit } from "../../src/server/shared/http-limits.js";
import { GatedExecutor } from "../fixtures/server/gated-executor.js";

/** A keep-alive connection from `localAddress` that has been served one request (so the server holds it). */
async function served(url: string, localAddress: string): Promise<Socket> {
  const { hostname, port } = new URL(url);
  const socket = connect({ host: hostname, port: Number(port), localAddress });
  socket.on("error", () => undefined);
  await once(socket, "connect");
  socket.write(`GET /v1/models HTTP/1.1\r\nHost: ${hostname}\r\n\r\n`);
  const [chunk] = (await once(socket, "data")) as [Buffer];
  assert.match(chunk.toString("latin1"), /^HTTP\/1\.1 200/);
  return socket;
}

/** Resolves with whatever the server sent once it closed a fresh connection from `localAddress`. */
async function refused(url: string, localAddress: string): Promise<string> {
  const { hostname, port } = new URL(url);
  const socket = connect({ host: hostname, port: Number(port), localAddress });
  let got = "";
  socket.on("data", (d: Buffer) => (got += d.toString("latin1")));
  socket.on("error", () => undefined);
  socket.on("connect", () => socket.write(`GET /v1/models HTTP/1.1\r\nHost: ${hostname}\r\n\r\n`));
  await once(socket, "close");
  return got;
}

describe("a per-address share of connections (issue 21 item 7)", () => {
  let server: OmniServer;
  const held: Socket[] = [];
  before(async () => {
    server = await startServer({ port: 0, logger: false, defaultMetrics: false, http: { maxConnections: 8, maxConnectionsPerAddress: 2 }, engineConfig: { executorClass: GatedExecutor } });
  });
  after(async () => {
    for (const s of held) s.destroy();
    await server.close();
  });

  test("a third connection from one address is closed unanswered; another address is still served", async () => {
    held.push(await served(server.url!, "127.0.0.1"), await served(server.url!, "127.0.0.1"));
    assert.equal(await refused(server.url!, "127.0.0.1"), "", "closed before any answer");
    held.push(await served(server.url!, "127.0.0.2"));
    // The two held connections still work.
    held[0]!.write(`GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
    const [again] = (await once(held[0]!, "data")) as [Buffer];
    assert.match(again.toString("latin1"), /^HTTP\/1\.1 200/);
  });

  test("the default share is a quarter of --max-connections", () => {
    assert.equal(perAddressLimit(DEFAULT_HTTP_LIMITS), 256);
    assert.equal(perAddressLimit({ ...DEFAULT_HTTP_LIMITS, maxConnections: 10 }), 3);
    assert.equal(perAddressLimit({ ...DEFAULT_HTTP_LIMITS, maxConnectionsPerAddress: 1000 }), 1000);
  });
});
