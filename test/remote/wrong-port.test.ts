/**
 * An executor pointed at the wrong kind of port, or at one nothing listens on, stops within
 * `refusedTimeoutMs` and says what is wrong in one line. Real servers on 127.0.0.1:0: a gRPC server
 * (HTTP/2) for the http executor, a plain HTTP server for an `https://` endpoint. With `refusedTimeoutMs: 0`
 * the first failed probe is final, so "fails fast" is checked as "fails, with this error, before
 * `workerStartTimeoutMs` (60 s by default)", never by measuring time.
 */
import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { parseConfig } from "../../src/core/config.js";
import { OmniError, TransportError } from "../../src/errors/omni-error.js";
import { GrpcDiffusionExecutor } from "../../src/executors/grpc-executor.js";
import { HttpDiffusionExecutor } from "../../src/executors/http-executor.js";
import type { RemoteExecutor } from "../../src/executors/shared/remote-executor.js";
import type { RetryEvent } from "../../src/policies/retry-events.js";

/** The test's hang guard: well under the 60 s workerStartTimeoutMs the executors below keep. */
const T = 30_000;

async function initFailure(ex: RemoteExecutor<unknown>): Promise<{ err: OmniError; retries: RetryEvent[] }> {
  const retries: RetryEvent[] = [];
  ex.onRetry((e) => retries.push(e));
  try {
    await ex.init();
  } catch (err) {
    return { err: err as OmniError, retries };
  } finally {
    await ex.close();
  }
  assert.fail("init should have failed");
}

async function grpcServer(): Promise<{ port: number; close: () => void }> {
  const server = new grpc.Server();
  const port = await new Promise<number>((resolve, reject) => server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  return { port, close: () => server.forceShutdown() };
}

describe("an executor at the wrong port fails fast, naming the cause", () => {
  it("http executor at a gRPC port: a protocol mismatch, not 60 s of retries", { timeout: T }, async () => {
    const g = await grpcServer();
    try {
      const ex = new HttpDiffusionExecutor(parseConfig({ executorOptions: { endpoints: [`127.0.0.1:${g.port}`], refusedTimeoutMs: 0 } }));
      const { err, retries } = await initFailure(ex);
      assert.ok(err instanceof TransportError, `TransportError, got ${err.name}: ${err.message}`);
      assert.equal(err.retryable, false);
      assert.equal(err.data.unreachable, true);
      assert.match(err.message, /no endpoint speaks the expected protocol/);
      assert.match(err.message, new RegExp(`http://127\\.0\\.0\\.1:${g.port}: protocol mismatch: the server there does not speak HTTP/1\\.1 \\(is it a gRPC port\\?`));
      assert.deepEqual(retries, [], "no retry once refusedTimeoutMs (0) has passed");
    } finally {
      g.close();
    }
  });

  it("a call that meets a gRPC port fails with the mismatch: the retry policy stops within refusedTimeoutMs", { timeout: T }, async () => {
    const g = await grpcServer();
    // The port answers HTTP until it is swapped for a gRPC server: init passes, the call meets gRPC.
    const http = createServer((req, res) => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ status: "ok" })));
    await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
    const httpPort = (http.address() as AddressInfo).port;
    const ex = new HttpDiffusionExecutor(parseConfig({ executorOptions: { endpoints: [`127.0.0.1:${httpPort}`, `127.0.0.1:${g.port}`], refusedTimeoutMs: 0, retries: 20, backoffInitialMs: 1, backoffMaxMs: 1 } }));
    const retries: RetryEvent[] = [];
    ex.onRetry((e) => retries.push(e));
    try {
      await ex.init();
      await new Promise<void>((resolve) => http.close(() => resolve()));
      http.closeAllConnections();
      const err = await ex.collectiveRpc("ping").then(
        () => assert.fail("the call should fail"),
        (e: unknown) => e as OmniError,
      );
      assert.ok(err instanceof TransportError, `TransportError, got ${err.name}: ${err.message}`);
      assert.equal(err.retryable, false);
      assert.match(err.message, /protocol mismatch/);
      assert.ok(retries.length < 20, `stopped before the 20 retries it was allowed (${retries.length})`);
      assert.ok(retries.every((r) => r.reason === "EPROTO" || r.reason === "ECONNREFUSED"), retries.map((r) => r.reason).join(", "));
    } finally {
      await ex.close();
      g.close();
    }
  });

  it("an https:// endpoint at a plain HTTP port: a TLS mismatch", { timeout: T }, async () => {
    const http = createServer((req, res) => res.end("{}"));
    await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
    const port = (http.address() as AddressInfo).port;
    try {
      const ex = new HttpDiffusionExecutor(parseConfig({ executorOptions: { endpoints: [`https://127.0.0.1:${port}`], refusedTimeoutMs: 0 } }));
      const { err } = await initFailure(ex);
      assert.ok(err instanceof TransportError, `TransportError, got ${err.name}: ${err.message}`);
      assert.match(err.message, /protocol mismatch: the server there does not speak TLS \(is it a plain http:\/\/ port\?\)/);
    } finally {
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    }
  });

  it("gRPC: a refused connection reads as one clean line (no empty 'Resolution note')", { timeout: T }, async () => {
    const g = await grpcServer();
    g.close(); // the port was just free: nothing listens there now
    const ex = new GrpcDiffusionExecutor(parseConfig({ executorOptions: { endpoints: [`127.0.0.1:${g.port}`], refusedTimeoutMs: 0 } }));
    const { err } = await initFailure(ex);
    assert.ok(err instanceof TransportError, `TransportError, got ${err.name}: ${err.message}`);
    assert.equal(err.data.unreachable, true);
    assert.equal(err.data.errno, "ECONNREFUSED");
    assert.doesNotMatch(err.message, /Resolution note/);
    assert.doesNotMatch(err.message, /[.:]\s*$/, "the message does not end in a dangling separator");
    assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${g.port}: gRPC UNAVAILABLE: connection refused: nothing listens there \\(connect ECONNREFUSED 127\\.0\\.0\\.1:${g.port}\\)$`));
  });
});
