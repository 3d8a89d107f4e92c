/**
 * Finding 3 of issue 9: slow or greedy clients must not hold connections. Every HTTP server (serve, the
 * worker's HTTP API, its SageMaker port) gets small configured timeouts here, and each test waits for the
 * server to close the socket (an event), never for a clock.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { OmniServer } from "../../src/index.js";
import type { HttpLimitsInput } from "../../src/server/shared/http-limits.js";
import { startWorkerServer } from "../../src/server/worker/worker-server.js";
import { GatedExecutor } from "../fixtures/server/gated-executor.js";
import { RawClient, rawRequest } from "../helpers/raw-http.js";

const KEY = "k3y";
const TIGHT: HttpLimitsInput = { headersTimeoutMs: 150, requestTimeoutMs: 300, keepAliveTimeoutMs: 200 };
const GUARD = { timeout: 30_000 };

interface Target {
  url: string;
  post: string;
  /** A route that needs no key (so answering it keeps the connection). */
  open: string;
  close(): Promise<void>;
}

const targets: [string, (http: HttpLimitsInput) => Promise<Target>][] = [
  [
    "serve",
    async (http) => {
      const s = await OmniServer.create({ port: 0, apiKey: KEY, logger: false, defaultMetrics: false, http, engineConfig: { executorClass: GatedExecutor, batchWindowMs: 0 } });
      const url = await s.listen();
      return { url, post: "/v1/images/generations", open: "/health", close: () => s.close({ timeoutMs: 0 }) };
    },
  ],
  ...(["http", "sagemaker"] as const).map((kind): [string, (http: HttpLimitsInput) => Promise<Target>] => [
    `worker ${kind} port`,
    async (http) => {
      // The model never loads: connection handling does not depend on it, and the test stays fast.
      const w = await startWorkerServer({ [kind === "http" ? "httpPort" : "sagemakerPort"]: 0, apiKey: KEY, http, engine: { model: "/nonexistent/model", numGpus: 1 } });
      await w.ready.catch(() => undefined);
      return { url: (kind === "http" ? w.httpUrl : w.sagemakerUrl)!, post: kind === "http" ? "/v1/diffusion/generate" : "/invocations", open: kind === "http" ? "/health" : "/ping", close: () => w.close() };
    },
  ]),
];

for (const [name, start] of targets) {
  describe(`${name}: slow clients and connection limits`, () => {
    const withServer = async (http: HttpLimitsInput, fn: (t: Target) => Promise<void>) => {
      const t = await start(http);
      try {
        await fn(t);
      } finally {
        await t.close();
      }
    };
    const json = [["Content-Type", "application/json"] as [string, string]];
    const authed = [...json, ["Authorization", `Bearer ${KEY}`] as [string, string]];

    it("closes a connection whose headers arrived but whose body never does (408)", GUARD, () =>
      withServer(TIGHT, async (t) => {
        const c = await RawClient.open(t.url);
        c.write(`POST ${t.post} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer ${KEY}\r\nContent-Length: 100\r\n\r\n`);
        assert.match(await c.closed, /^HTTP\/1\.1 408/);
      }));

    it("closes a connection whose body trickles in slower than the request timeout", GUARD, () =>
      withServer(TIGHT, async (t) => {
        const c = await RawClient.open(t.url);
        const body = JSON.stringify({ requests: [{ prompt: "a red circle on a blue background" }] });
        c.write(`POST ${t.post} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer ${KEY}\r\nContent-Length: ${body.length}\r\n\r\n`);
        const answer = await c.trickle(body, 40);
        assert.doesNotMatch(answer, /^HTTP\/1\.1 2/, "no request is served from a body that never arrived in time");
      }));

    it("closes a connection whose headers never finish", GUARD, () =>
      withServer(TIGHT, async (t) => {
        const c = await RawClient.open(t.url);
        await c.trickle(`GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ${"a".repeat(10_000)}`, 20);
        assert.ok(c.socket.destroyed);
      }));

    it("answers a wrong key with 401 and closes the connection", GUARD, () =>
      withServer({}, async (t) => {
        const c = await RawClient.open(t.url);
        c.write(rawRequest("POST", t.post, [...json, ["Authorization", "Bearer wrong"]], '{"requests": []}'));
        const answer = await c.closed;
        assert.match(answer, /^HTTP\/1\.1 401/);
        assert.match(answer, /\r\nconnection: close\r\n/i);
      }));

    it("refuses two Authorization headers even when one holds the key", GUARD, () =>
      withServer({}, async (t) => {
        const c = await RawClient.open(t.url);
        c.write(rawRequest("POST", t.post, [...authed, ["Authorization", "Bearer other"]], '{"requests": []}'));
        assert.match(await c.closed, /^HTTP\/1\.1 401/);
      }));

    it("closes connections beyond maxConnections at once, and keeps serving the ones it has", GUARD, () =>
      withServer({ maxConnections: 2, maxConnectionsPerAddress: 2, headersTimeoutMs: 60_000, requestTimeoutMs: 60_000, keepAliveTimeoutMs: 60_000 }, async (t) => {
        const held = [await RawClient.open(t.url), await RawClient.open(t.url)];
        // An answer on each proves the server counted both before the third arrives.
        for (const c of held) {
          c.write(rawRequest("GET", t.open, []));
          await c.waitFor(/\r\n\r\n[\s\S]*\}/);
        }
        const third = await RawClient.open(t.url);
        third.write(rawRequest("GET", t.open, []));
        assert.equal(await third.closed, "", "the extra connection got no answer, only a close");
        held[0]!.received = "";
        held[0]!.write(rawRequest("GET", t.open, []));
        await held[0]!.waitFor(/^HTTP\/1\.1 (200|503)/);
        for (const c of held) c.destroy();
      }));
  });
}
