/**
 * Issue 9 on `omni-diffusion worker`: no single request can kill it (finding 1), the key is checked before a
 * gRPC message is read and messages are capped (5), the SageMaker port honours the key (4), nothing internal
 * leaks (7), deep JSON is a 400 everywhere (8), and gRPC input is checked like HTTP input (15).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import { ERROR_METADATA_KEY, createClient, errorFromGrpc, grpcStatusFor } from "../../src/protocol/grpc-codec.js";
import { checkApiKey } from "../../src/server/shared/api-key.js";
import { startWorkerServer, type WorkerServer } from "../../src/server/worker/worker-server.js";
import { RawClient, rawRequest } from "../helpers/raw-http.js";
import { startTestWorker } from "../helpers/worker-servers.js";

const T = 120_000;
const KEY = "s3cret";
const LEAKY = `${fileURLToPath(new URL("../fixtures/server/leaky-extension.ts", import.meta.url))}#LeakyExtension`;
const DEEP = `${"[".repeat(5_000)}${"]".repeat(5_000)}`;

type Reply = { err: grpc.ServiceError | null; value: unknown };

function metadata(key: string): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set("authorization", `Bearer ${key}`);
  return md;
}

/** One unary call with raw bytes in and out (so any message, even invalid protobuf, can be sent). */
function rawCall(client: grpc.Client, method: string, bytes: Buffer, md: grpc.Metadata): Promise<Reply> {
  return new Promise((resolve) =>
    client.makeUnaryRequest(`/omni_diffusion.v1.OmniDiffusion/${method}`, (b: Buffer) => b, (b: Buffer) => b, bytes, md, { deadline: Date.now() + 60_000 }, (err, value) =>
      resolve({ err: err ?? null, value }),
    ),
  );
}

/** One unary call through the generated client. */
function call(client: grpc.Client, method: string, req: unknown, md: grpc.Metadata): Promise<Reply> {
  const fn = (client as unknown as Record<string, (r: unknown, m: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, v: unknown) => void) => void>)[method]!;
  return new Promise((resolve) => fn.call(client, req, md, { deadline: Date.now() + 60_000 }, (err, value) => resolve({ err, value })));
}

async function post(url: string, body: string | Buffer, headers: Record<string, string> = {}) {
  const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${KEY}`, ...headers }, body });
  const text = await res.text();
  return { status: res.status, text, json: JSON.parse(text) as any };
}

describe("worker hardening", { timeout: 10 * T }, () => {
  let server: WorkerServer;
  let client: grpc.Client;
  before(async () => {
    server = await startTestWorker({ httpPort: 0, grpcPort: 0, sagemakerPort: 0, apiKey: KEY, bodyLimitBytes: 64 * 1024, engine: { workerExtension: LEAKY } });
    client = createClient(server.grpcAddress!);
  });
  after(async () => {
    client?.close();
    await server?.close();
  });

  const healthy = async () => {
    const h = await call(client, "Health", {}, new grpc.Metadata());
    assert.equal(h.err, null);
    assert.equal((h.value as { ready: boolean }).ready, true);
  };

  it("answers non-ASCII in a call-level error as INVALID_ARGUMENT, with the error in binary metadata, and lives on", { timeout: T }, async () => {
    const r = await call(client, "CollectiveRpc", { method: "ping", args_json: "é" }, metadata(KEY));
    assert.equal(r.err?.code, grpc.status.INVALID_ARGUMENT);
    const raw = r.err!.metadata.get(ERROR_METADATA_KEY)[0];
    assert.ok(Buffer.isBuffer(raw));
    assert.equal(JSON.parse(raw.toString("utf8")).code, "OMNI_ERR_VALIDATION");
    const dup = { request_id: "ünïcødé-1", prompt: "a red circle", width: 32, height: 32, num_inference_steps: 1 };
    const g = await call(client, "Generate", { requests: [dup, dup] }, metadata(KEY));
    assert.equal(g.err?.code, grpc.status.INVALID_ARGUMENT);
    const rebuilt = errorFromGrpc(g.err!, "test");
    assert.equal(rebuilt.code, "OMNI_ERR_VALIDATION");
    assert.match(rebuilt.message, /"ünïcødé-1" appears twice/);
    await healthy();
  });

  it("checks the key before reading the message, and caps messages at the body limit", { timeout: T }, async () => {
    const big = Buffer.alloc(1024 * 1024, 0x41);
    const unauth = await rawCall(client, "Generate", big, metadata("wrong"));
    assert.equal(unauth.err?.code, grpc.status.UNAUTHENTICATED, `${unauth.err?.details} ${JSON.stringify(unauth.err?.metadata.getMap())}`);
    const tooBig = await rawCall(client, "Generate", big, metadata(KEY));
    assert.equal(tooBig.err?.code, grpc.status.RESOURCE_EXHAUSTED, `${tooBig.err?.details}`);
    // Two `authorization` values: Node's HTTP/2 refuses to send them (a single-value header), so the shared
    // check the interceptor calls is tested with the list it would get from another client.
    assert.equal(checkApiKey([`Bearer ${KEY}`, "Bearer other"], KEY)?.statusCode, 401);
    assert.equal(grpcStatusFor(checkApiKey([`Bearer ${KEY}`, `Bearer ${KEY}`], KEY)!), grpc.status.UNAUTHENTICATED);
    const spaced = new grpc.Metadata();
    spaced.set("authorization", `bearer   ${KEY}`);
    assert.equal((await call(client, "CollectiveRpc", { method: "ping" }, spaced)).err, null, "the HTTP trimming rules");
    await healthy();
  });

  it("answers invalid protobuf and 5,000-deep args_json with INVALID_ARGUMENT", { timeout: T }, async () => {
    const bad = await rawCall(client, "CollectiveRpc", Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]), metadata(KEY));
    assert.equal(bad.err?.code, grpc.status.INVALID_ARGUMENT, bad.err?.details);
    const deep = await call(client, "CollectiveRpc", { method: "ping", args_json: DEEP }, metadata(KEY));
    assert.equal(deep.err?.code, grpc.status.INVALID_ARGUMENT, deep.err?.details);
    assert.match(deep.err!.details, /deeper than 64 levels/);
    await healthy();
  });

  it("answers 5,000-deep RPC args with 400 on the HTTP and SageMaker ports", { timeout: T }, async () => {
    const http = await post(`${server.httpUrl}/v1/diffusion/rpc`, `{"method": "ping", "args": ${DEEP}}`);
    assert.equal(http.status, 400, http.text);
    const sm = await post(`${server.sagemakerUrl}/invocations`, `{"rpc": {"method": "ping", "args": ${DEEP}}}`);
    assert.equal(sm.status, 400, sm.text);
    const gz = await post(`${server.httpUrl}/v1/diffusion/rpc`, '{"method": "ping"}', { "content-encoding": "gzip" });
    assert.equal(gz.status, 415);
  });

  it("keeps pid and model path out of getStats on every transport", { timeout: T }, async () => {
    const http = await post(`${server.httpUrl}/v1/diffusion/rpc`, JSON.stringify({ method: "getStats" }));
    const g = await call(client, "CollectiveRpc", { method: "getStats", unique_reply_rank: 0 }, metadata(KEY));
    for (const text of [http.text, (g.value as { result_json: string }).result_json]) {
      assert.ok(!/"pid"|modelDir/.test(text), text);
      assert.ok(!text.includes(process.cwd()), text);
      assert.match(text, /"name":"tiny-shapes"/);
    }
  });

  it("answers an internal failure with a generic message and request id on every transport", { timeout: T }, async () => {
    const http = await post(`${server.httpUrl}/v1/diffusion/rpc`, JSON.stringify({ method: "leak" }));
    const sm = await post(`${server.sagemakerUrl}/invocations`, JSON.stringify({ rpc: { method: "leak" } }));
    for (const r of [http, sm]) {
      assert.equal(r.status, 500);
      assert.ok(!/onnxruntime|137438953472/.test(r.text), r.text);
      assert.match(r.json.error.message, /internal error \(request req-/);
    }
    const g = await call(client, "CollectiveRpc", { method: "leak" }, metadata(KEY));
    assert.equal(g.err?.code, grpc.status.INTERNAL);
    assert.ok(!/onnxruntime/.test(g.err!.details + g.err!.metadata.get(ERROR_METADATA_KEY)[0]!.toString()), g.err!.details);
    await healthy();
  });

  it("closes a streamed generate's connection when the client asked for Connection: close", { timeout: T }, async () => {
    const c = await RawClient.open(server.httpUrl!);
    const body = JSON.stringify({ requests: [{ prompt: "a red circle on a blue background", width: 32, height: 32, num_inference_steps: 1 }] });
    c.write(rawRequest("POST", "/v1/diffusion/generate", [["Content-Type", "application/json"], ["Authorization", `Bearer ${KEY}`], ["Accept", "text/event-stream"], ["Connection", "close"]], body));
    const answer = await c.closed;
    assert.match(answer, /^HTTP\/1\.1 200/);
    assert.match(answer, /event: result/);
    assert.match(answer, /\r\nconnection: close\r\n/i, "the stream does not force keep-alive");
  });

  it("requires the key on the SageMaker port's invocations (not on /ping)", { timeout: T }, async () => {
    const body = JSON.stringify({ health: {} });
    assert.equal((await post(`${server.sagemakerUrl}/invocations`, body, { authorization: "" })).status, 401);
    assert.equal((await post(`${server.sagemakerUrl}/invocations`, body)).status, 200);
    assert.equal((await fetch(`${server.sagemakerUrl}/ping`)).status, 200);
  });
});

describe("SageMaker port exposure", () => {
  const broken = { model: "/nonexistent/model", numGpus: 1 };

  it("binds loopback by default, even when the APIs listen on every interface, and says so", async () => {
    const s = await startWorkerServer({ host: "0.0.0.0", httpPort: 0, sagemakerPort: 0, apiKey: KEY, engine: broken });
    try {
      assert.match(s.sagemakerUrl!, /^http:\/\/127\.0\.0\.1:/);
      assert.deepEqual(s.warnings, []);
    } finally {
      await s.close();
    }
  });

  it("with --sagemaker-trust-network takes invocations without the key, and warns on a public interface", async () => {
    const s = await startWorkerServer({ sagemakerHost: "0.0.0.0", sagemakerPort: 0, apiKey: KEY, sagemakerTrustNetwork: true, engine: broken });
    try {
      await s.ready.catch(() => undefined);
      const r = await fetch(`${s.sagemakerUrl!.replace("0.0.0.0", "127.0.0.1")}/invocations`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ health: {} }) });
      assert.equal(r.status, 503, "past the key check, refused only because the model did not load");
      assert.match(s.warnings.join("\n"), /does not check the API key/);
    } finally {
      await s.close();
    }
  });
});
