/**
 * Failures a retry cannot fix end at once, with the remote's own reason and a typed error: real loopback
 * servers answering 401/403/404/400, a gRPC server refusing the caller, a stand-in for AWS refusing the
 * credentials (or none at all), and a port nothing listens on. Each server counts what it received, so
 * "at once" is checked as "no second attempt", never by measuring time.
 */
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { after, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { parseConfig, type OmniDiffusionConfigInput } from "../../src/core/config.js";
import { OmniDiffusionRequest } from "../../src/core/request.js";
import {
  ConfigError,
  NotFoundError,
  OmniError,
  PermissionError,
  TransportError,
  UnauthorizedError,
  ValidationError,
} from "../../src/errors/omni-error.js";
import { GrpcDiffusionExecutor } from "../../src/executors/grpc-executor.js";
import { HttpDiffusionExecutor } from "../../src/executors/http-executor.js";
import { OpenAIImagesExecutor } from "../../src/executors/openai-executor.js";
import { SageMakerDiffusionExecutor } from "../../src/executors/sagemaker-executor.js";
import { omniDiffusionService } from "../../src/protocol/grpc-codec.js";
import type { RemoteExecutor } from "../../src/executors/shared/remote-executor.js";
import type { RetryEvent } from "../../src/policies/retry-events.js";
import { useTestCredentials } from "../helpers/fake-sagemaker-runtime.js";

const T = 60_000;

/** A loopback HTTP server answering every request with `answer`, counting requests. */
async function stubServer(answer: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ url: string; hits: string[]; close: () => Promise<void> }> {
  const hits: string[] = [];
  const server: Server = createServer((req, res) => {
    hits.push(`${req.method} ${req.url}`);
    req.resume();
    req.on("end", () => answer(req, res));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    hits,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const json = (status: number, body: unknown, headers: Record<string, string> = {}) => (_req: IncomingMessage, res: ServerResponse) => {
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(JSON.stringify(body));
};

/** A port that was just free: nothing listens there (connection refused). */
async function deadPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/** Starts `ex` and returns what `init` threw, with the retries it reported meanwhile. */
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

const http = (endpoints: string[], extra: Record<string, unknown> = {}, config: OmniDiffusionConfigInput = {}) =>
  new HttpDiffusionExecutor(parseConfig({ ...config, executorOptions: { endpoints, backoffInitialMs: 1, ...extra } }));

describe("a remote executor stops at once on failures a retry cannot fix", { timeout: 10 * T }, () => {
  const servers: { close: () => Promise<void> }[] = [];
  after(async () => {
    await Promise.all(servers.map((s) => s.close()));
  });

  const cases: [number, new (...a: never[]) => OmniError, string][] = [
    [401, UnauthorizedError, "OMNI_ERR_UNAUTHORIZED"],
    [403, PermissionError, "OMNI_ERR_PERMISSION"],
    [404, NotFoundError, "OMNI_ERR_NOT_FOUND"],
    [400, ValidationError, "OMNI_ERR_VALIDATION"],
  ];
  for (const [status, Cls, code] of cases) {
    it(`init against a server answering ${status} fails with ${Cls.name} and the server's reason, after one probe`, { timeout: T }, async () => {
      const stub = await stubServer(json(status, { error: { message: `the server says ${status}` } }));
      servers.push(stub);
      // workerStartTimeoutMs stays at its 60 s default: before, init retried the probe until then.
      const { err, retries } = await initFailure(new OpenAIImagesExecutor(parseConfig({ executorOptions: { endpoints: [stub.url] } })));
      assert.ok(err instanceof Cls, `${Cls.name}, got ${err.name}: ${err.message}`);
      assert.equal(err.code, code);
      assert.match(err.message, new RegExp(`the server says ${status}`));
      assert.match(err.message, new RegExp(stub.url.replace(/[.]/g, "\\.")));
      assert.equal(err.retryable, false);
      assert.deepEqual(retries, [], "no retry was attempted");
      assert.deepEqual(stub.hits, ["GET /v1/models"], "exactly one health probe");
    });
  }

  it("a generate answered 401 fails that call at once, with no retry", { timeout: T }, async () => {
    let generates = 0;
    const stub = await stubServer((req, res) => {
      if (req.url === "/health") return json(200, { status: "ok" })(req, res);
      generates++;
      json(401, { error: { name: "UnauthorizedError", code: "OMNI_ERR_UNAUTHORIZED", message: "wrong API key" } })(req, res);
    });
    servers.push(stub);
    const ex = http([stub.url], { retries: 5 });
    const retries: RetryEvent[] = [];
    ex.onRetry((e) => retries.push(e));
    await ex.init();
    try {
      const r = new OmniDiffusionRequest({ prompt: "a red circle", seed: 1 });
      const out = await ex.executeModel([r]);
      const err = out.errors[r.requestId];
      assert.ok(err instanceof UnauthorizedError, `UnauthorizedError, got ${err?.name}`);
      assert.equal(err.message, "wrong API key");
      assert.equal(generates, 1);
      assert.deepEqual(retries, []);
    } finally {
      await ex.close();
    }
  });

  it("connection refused on every endpoint fails init naming each refusal, not a timeout", { timeout: T }, async () => {
    const [p1, p2] = [await deadPort(), await deadPort()];
    const { err, retries } = await initFailure(http([`127.0.0.1:${p1}`, `127.0.0.1:${p2}`], { refusedTimeoutMs: 200 }));
    assert.ok(err instanceof TransportError, `TransportError, got ${err.name}: ${err.message}`);
    assert.equal(err.retryable, false);
    assert.equal(err.data.unreachable, true);
    assert.equal(err.data.errno, "ECONNREFUSED");
    assert.match(err.message, new RegExp(`ECONNREFUSED 127\\.0\\.0\\.1:${p1}`));
    assert.match(err.message, new RegExp(`ECONNREFUSED 127\\.0\\.0\\.1:${p2}`));
    assert.doesNotMatch(err.message, /circuit/);
    // The wait was said, not silent: each round reported as an init retry naming the refusal.
    assert.ok(retries.length >= 1);
    assert.ok(retries.every((e) => e.operation === "init" && e.reason === "ECONNREFUSED"));
  });

  it("a call whose only endpoint went away fails with the refusal, never the breaker's 'circuit open'", { timeout: T }, async () => {
    const stub = await stubServer(json(200, { status: "ok" }));
    // Breaker opens on the first refusal and stays open: later attempts are refused by it, not by the socket.
    const ex = http([stub.url], { retries: 4, breakerThreshold: 1, halfOpenAfterMs: 600_000, backoffMaxMs: 1, refusedTimeoutMs: 600_000 });
    const retries: RetryEvent[] = [];
    ex.onRetry((e) => retries.push(e));
    await ex.init();
    await stub.close();
    try {
      const err = await ex.collectiveRpc("ping").then(
        () => assert.fail("the call should fail"),
        (e: unknown) => e as OmniError,
      );
      assert.ok(err instanceof TransportError);
      assert.equal(err.data.errno, "ECONNREFUSED");
      assert.doesNotMatch(err.message, /circuit/);
      assert.equal(retries.length, 4, "the breaker's refusals were retried, then the real error reported");
      assert.match(ex.endpointMetrics()[0]!.lastError!, /ECONNREFUSED/);
    } finally {
      await ex.close();
    }
  });

  it("gRPC: UNAUTHENTICATED and PERMISSION_DENIED without an omni error become typed errors at once", { timeout: T }, async () => {
    for (const [status, Cls] of [
      [grpc.status.UNAUTHENTICATED, UnauthorizedError],
      [grpc.status.PERMISSION_DENIED, PermissionError],
      [grpc.status.UNIMPLEMENTED, NotFoundError],
    ] as const) {
      let calls = 0;
      const server = new grpc.Server();
      const refuse = (_call: unknown, cb: grpc.sendUnaryData<unknown>) => {
        calls++;
        cb({ code: status, details: `proxy says no (${status})` });
      };
      const { service } = omniDiffusionService();
      server.addService(service, Object.fromEntries(Object.keys(service).map((m) => [m, refuse])) as grpc.UntypedServiceImplementation);
      const port = await new Promise<number>((resolve, reject) =>
        server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
      );
      try {
        const { err, retries } = await initFailure(new GrpcDiffusionExecutor(parseConfig({ executorOptions: { endpoints: [`127.0.0.1:${port}`] } })));
        assert.ok(err instanceof Cls, `${Cls.name}, got ${err.name}: ${err.message}`);
        assert.match(err.message, /proxy says no/);
        assert.equal(calls, 1);
        assert.deepEqual(retries, []);
      } finally {
        server.forceShutdown();
      }
    }
  });

  it("gRPC: a port nothing listens on fails init as unreachable", { timeout: T }, async () => {
    const port = await deadPort();
    const { err } = await initFailure(new GrpcDiffusionExecutor(parseConfig({ executorOptions: { endpoints: [`127.0.0.1:${port}`], refusedTimeoutMs: 0 } })));
    assert.ok(err instanceof TransportError, `TransportError, got ${err.name}: ${err.message}`);
    assert.equal(err.data.unreachable, true);
    assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
  });

  it("SageMaker: credentials AWS refuses, and no credentials at all, fail init at once", { timeout: T }, async () => {
    useTestCredentials();
    const aws = await stubServer(
      json(400, { message: "The security token included in the request is invalid." }, { "x-amzn-errortype": "UnrecognizedClientException:http://internal.amazon.com/coral/com.amazon.coral.service/" }),
    );
    servers.push(aws);
    const sagemaker = () => new SageMakerDiffusionExecutor(parseConfig({ executorOptions: { endpointName: "omni", endpointUrl: aws.url, region: "us-east-1" } }));
    const refused = await initFailure(sagemaker());
    assert.ok(refused.err instanceof UnauthorizedError, `UnauthorizedError, got ${refused.err.name}: ${refused.err.message}`);
    assert.match(refused.err.message, /security token included in the request is invalid/);
    assert.equal(aws.hits.length, 1);
    assert.deepEqual(refused.retries, []);

    const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY, profile: process.env.AWS_PROFILE, file: process.env.AWS_SHARED_CREDENTIALS_FILE, config: process.env.AWS_CONFIG_FILE };
    delete process.env.AWS_ACCESS_KEY_ID;
    delete process.env.AWS_SECRET_ACCESS_KEY;
    process.env.AWS_SHARED_CREDENTIALS_FILE = "/nonexistent/omni-credentials";
    process.env.AWS_CONFIG_FILE = "/nonexistent/omni-config";
    try {
      const none = await initFailure(sagemaker());
      assert.ok(none.err instanceof ConfigError, `ConfigError, got ${none.err.name}: ${none.err.message}`);
      assert.match(none.err.message, /no AWS credentials/);
      assert.equal(aws.hits.length, 1, "nothing was sent without credentials");
      assert.deepEqual(none.retries, []);
    } finally {
      useTestCredentials();
      if (saved.file === undefined) delete process.env.AWS_SHARED_CREDENTIALS_FILE;
      else process.env.AWS_SHARED_CREDENTIALS_FILE = saved.file;
      if (saved.config === undefined) delete process.env.AWS_CONFIG_FILE;
      else process.env.AWS_CONFIG_FILE = saved.config;
    }
  });
});
