/** Bad and hostile input to `omni-diffusion worker`: a clear 4xx each time, and the server keeps serving. */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { DiffusionOutput } from "../../src/core/output.js";
import { OmniDiffusionRequest } from "../../src/core/request.js";
import { startWorkerServer, type WorkerServer } from "../../src/server/worker/worker-server.js";
import { STEP_GATE, stepGate, type StepGateControl } from "../helpers/step-gate.js";
import { workerRpc } from "../helpers/worker-rpc.js";
import { startTestWorker } from "../helpers/worker-servers.js";

const T = 120_000;
const KEY = "s3cret";
const AUTH = { authorization: `Bearer ${KEY}` };
const good = (i: number): Record<string, unknown> => new OmniDiffusionRequest({ prompt: `a blue circle ${i}`, width: 32, height: 32, numInferenceSteps: 2, seed: i }).toDict();

const TWIN = good(99);

async function send(url: string, opts: { method?: string; body?: string; headers?: Record<string, string> } = {}) {
  const res = await fetch(url, {
    method: opts.method ?? "POST",
    headers: { "content-type": "application/json", ...AUTH, ...opts.headers },
    body: opts.body,
  });
  const text = await res.text();
  let json: any = null;
  try {
    json = JSON.parse(text);
  } catch {
    // kept as text below
  }
  return { status: res.status, json, text, headers: res.headers };
}

describe("worker server input handling", { timeout: 10 * T }, () => {
  let server: WorkerServer;
  let gen: string;
  /** Holds a request at a step until released or aborted, so a deadline meets work that cannot finish. */
  let gate: StepGateControl;
  before(async () => {
    server = await startTestWorker({ httpPort: 0, sagemakerPort: 0, apiKey: KEY, bodyLimitBytes: 64 * 1024, engine: { workerExtension: STEP_GATE } });
    gen = `${server.httpUrl}/v1/diffusion/generate`;
    gate = stepGate(workerRpc(server.httpUrl!, AUTH));
  });
  after(async () => {
    await server?.close();
  });

  const cases: [string, () => Promise<{ status: number; json: any }>, number, RegExp | null][] = [
    ["malformed JSON", () => send(gen, { body: '{"requests": [' }), 400, /not valid JSON/],
    ["an empty body", () => send(gen, { body: "" }), 400, /empty/],
    ["a non-JSON content type", () => send(gen, { body: "prompt=x", headers: { "content-type": "text/plain" } }), 415, /Content-Type/],
    ["requests that is not an array", () => send(gen, { body: JSON.stringify({ requests: "all of them" }) }), 400, /requests/],
    ["an unknown top-level field", () => send(gen, { body: JSON.stringify({ requests: [good(1)], admin: true }) }), 400, /admin/],
    ["a prompt of the wrong type", () => send(gen, { body: JSON.stringify({ requests: [{ ...good(1), prompt: 42 }] }) }), 400, /requests\.0\.prompt/],
    ["a width that is a string", () => send(gen, { body: JSON.stringify({ requests: [{ ...good(1), width: "wide" }] }) }), 400, /requests\.0\.width/],
    ["a huge size", () => send(gen, { body: JSON.stringify({ requests: [{ ...good(1), width: 1_000_000, height: 1_000_000 }] }) }), 400, /requests\.0\.width\) is larger than the limit of 128x128/],
    ["huge step counts", () => send(gen, { body: JSON.stringify({ requests: [{ ...good(1), num_inference_steps: 1e9 }] }) }), 400, /num_inference_steps/],
    ["too many images", () => send(gen, { body: JSON.stringify({ requests: [{ ...good(1), num_outputs_per_prompt: 5000 }] }) }), 400, /num_outputs_per_prompt/],
    ["too many requests in one call", () => send(gen, { body: JSON.stringify({ requests: Array.from({ length: 300 }, () => ({ prompt: "x" })) }) }), 400, /requests/],
    ["the same id twice in one call", () => send(gen, { body: JSON.stringify({ requests: [TWIN, TWIN] }) }), 400, /appears twice/],
    ["a body over the limit", () => send(gen, { body: JSON.stringify({ requests: [good(1)], pad: "x".repeat(100_000) }) }), 413, /larger than the limit/],
    ["prototype pollution", () => send(gen, { body: '{"requests": [], "__proto__": {"admin": true}}' }), 400, null],
    ["a malformed deadline header", () => send(gen, { body: JSON.stringify({ requests: [good(1)] }), headers: { "x-omni-timeout-ms": "soon" } }), 400, /x-omni-timeout-ms/],
    ["a missing API key", () => send(gen, { body: JSON.stringify({ requests: [good(1)] }), headers: { authorization: "" } }), 401, /API key/],
    ["a wrong API key", () => send(gen, { body: JSON.stringify({ requests: [good(1)] }), headers: { authorization: "Bearer nope" } }), 401, /Incorrect API key/],
    ["an unknown RPC method", () => send(`${server.httpUrl}/v1/diffusion/rpc`, { body: JSON.stringify({ method: "formatDisk" }) }), 404, /no method "formatDisk"/],
    ["an RPC method name that is not an identifier", () => send(`${server.httpUrl}/v1/diffusion/rpc`, { body: JSON.stringify({ method: "../../etc/passwd" }) }), 400, /method/],
    ["generate smuggled through the RPC route", () => send(`${server.httpUrl}/v1/diffusion/rpc`, { body: JSON.stringify({ method: "generate", args: [[{ ...good(1), width: 1_000_000 }]] }) }), 400, /not callable as an RPC/],
    ["an RPC rank out of range", () => send(`${server.httpUrl}/v1/diffusion/rpc`, { body: JSON.stringify({ method: "ping", unique_reply_rank: 9 }) }), 400, /uniqueReplyRank/],
    ["an unknown route", () => send(`${server.httpUrl}/v1/diffusion/delete-everything`, { method: "GET" }), 404, /no route/],
    ["an abort without ids", () => send(`${server.httpUrl}/v1/diffusion/abort`, { body: JSON.stringify({ request_ids: [] }) }), 400, /request_ids/],
    ["a SageMaker invocation of an unknown shape", () => send(`${server.sagemakerUrl}/invocations`, { body: JSON.stringify({ please: "generate" }) }), 400, /an invocation is/],
    ["a SageMaker invocation with bad requests", () => send(`${server.sagemakerUrl}/invocations`, { body: JSON.stringify({ requests: [{ prompt: 1 }] }) }), 400, /requests\.0\.prompt/],
  ];

  for (const [what, run, status, pattern] of cases) {
    it(`answers ${what} with a ${status}`, { timeout: T }, async () => {
      const r = await run();
      assert.equal(r.status, status, JSON.stringify(r.json));
      assert.equal(typeof r.json?.error?.code, "string", "a typed error body");
      assert.match(r.json.error.code, /^OMNI_ERR_/);
      if (pattern) assert.match(r.json.error.message, pattern);
    });
  }

  it("is still up and serving after all of that; health needs no key", { timeout: T }, async () => {
    const health = await send(`${server.httpUrl}/health`, { method: "GET", headers: { authorization: "" } });
    assert.equal(health.status, 200);
    assert.equal(health.json.status, "ok");
    // A request that passes validation but fails on its own (its id is taken by a finished request with other
    // parameters: 409) gets its own error; its neighbour in the call still runs.
    const prior = good(12);
    assert.equal((await send(gen, { body: JSON.stringify({ requests: [prior] }) })).status, 200);
    const r = await send(gen, { body: JSON.stringify({ requests: [good(11), { ...prior, seed: 999 }] }) });
    assert.equal(r.status, 200);
    const [ok, bad] = r.json.outputs.map((o: unknown) => DiffusionOutput.fromDict(o));
    assert.equal(ok.output.length, 1, "the good request ran");
    assert.equal(Object.values(bad.errors).length, 1, "the bad one got its own error");
  });

  it("serves the SageMaker contract: /ping, and /invocations in every documented shape", { timeout: T }, async () => {
    const ping = await send(`${server.sagemakerUrl}/ping`, { method: "GET", headers: { authorization: "" } });
    assert.equal(ping.status, 200);
    // The key is required here too (issue 9 finding 4; SageMaker deployments pass --sagemaker-trust-network).
    const keyless = await send(`${server.sagemakerUrl}/invocations`, { body: JSON.stringify([good(21), good(22)]), headers: { authorization: "" } });
    assert.equal(keyless.status, 401);
    const quickStart = await send(`${server.sagemakerUrl}/invocations`, { body: JSON.stringify([good(21), good(22)]) });
    assert.equal(quickStart.status, 200);
    assert.equal(DiffusionOutput.fromDict(quickStart.json).output.length, 2, "a bare array gets one merged DiffusionOutput");
    const rpc = await send(`${server.sagemakerUrl}/invocations`, { body: JSON.stringify({ rpc: { method: "ping" } }) });
    assert.equal(rpc.json.result[0].rank, 0);
    const health = await send(`${server.sagemakerUrl}/invocations`, { body: JSON.stringify({ health: {} }) });
    assert.equal(health.json.status, "ok");
    // timeout_ms in the custom attributes is the request's deadline: held before its first step, the request
    // cannot finish, so only that deadline can end it.
    const held = good(23);
    await gate.hold(0, held.request_id as string);
    try {
      const timed = await send(`${server.sagemakerUrl}/invocations`, {
        body: JSON.stringify({ requests: [held] }),
        headers: { "x-amzn-sagemaker-custom-attributes": "trace=1, timeout_ms=100" },
      });
      assert.equal(timed.status, 200, timed.text);
      assert.deepEqual(Object.keys(timed.json.outputs[0].errors), [held.request_id]);
      assert.equal(timed.json.outputs[0].errors[held.request_id as string].code, "OMNI_ERR_TIMEOUT");
    } finally {
      await gate.release(held.request_id as string);
    }
  });
});

describe("a worker whose model cannot load", { timeout: T }, () => {
  it("answers health with a 503 and the reason, and generate with a 503, instead of dying", { timeout: T }, async () => {
    const server = await startWorkerServer({ httpPort: 0, engine: { model: "/nonexistent/model", numGpus: 1, intraOpNumThreads: 1 } });
    try {
      await assert.rejects(server.ready);
      const health = await send(`${server.httpUrl}/health`, { method: "GET" });
      assert.equal(health.status, 503);
      assert.equal(health.json.status, "unavailable");
      assert.match(health.json.reason, /failed to start/);
      assert.equal(health.json.error.code, "OMNI_ERR_UNHEALTHY");
      const r = await send(`${server.httpUrl}/v1/diffusion/generate`, { body: JSON.stringify({ requests: [good(1)] }) });
      assert.equal(r.status, 503);
      assert.equal(r.json.error.code, "OMNI_ERR_UNHEALTHY");
    } finally {
      await server.close();
    }
  });
});
