import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { OmniServer, WorkerDiedError, type OpenAIErrorBody, type ServerOptions } from "../../src/index.js";
import { GatedExecutor } from "../fixtures/server/gated-executor.js";
import { until } from "../helpers/server.js";

const KEY = "sekret";
const auth = { authorization: `Bearer ${KEY}` };

/** A server on the gated executor (no workers: fast and deterministic), answering through inject(). */
async function gatedServer(extra: Partial<ServerOptions> = {}): Promise<{ server: OmniServer; gate: GatedExecutor }> {
  const server = await OmniServer.create({
    apiKey: KEY,
    logger: false,
    defaultMetrics: false,
    limits: { maxN: 4, maxSteps: 50, maxWidth: 256, maxHeight: 256, maxPromptChars: 100, maxBodyBytes: 2_048 },
    engineConfig: { executorClass: GatedExecutor, batchWindowMs: 0, limits: { maxQueue: 1, maxBatchSize: 1 } },
    ...extra,
  });
  return { server, gate: server.engine.executor as GatedExecutor };
}

function post(server: OmniServer, payload: unknown, headers: Record<string, string> = auth) {
  return server.app.inject({ method: "POST", url: "/v1/images/generations", headers: { "content-type": "application/json", ...headers }, payload: JSON.stringify(payload) });
}

function errorOf(res: { statusCode: number; body: string }): OpenAIErrorBody["error"] {
  const body = JSON.parse(res.body) as OpenAIErrorBody;
  assert.deepEqual(Object.keys(body), ["error"], "OpenAI error shape");
  assert.deepEqual(Object.keys(body.error).sort(), ["code", "message", "param", "type"]);
  return body.error;
}

/** [case, body, status, param, code, message pattern] */
const BAD_BODIES: [string, unknown, number, string | null, string, RegExp][] = [
  ["missing prompt", { n: 1 }, 422, "prompt", "missing_required_parameter", /Missing required parameter: 'prompt'/],
  ["empty prompt", { prompt: "" }, 422, "prompt", "invalid_value", /'prompt'/],
  ["unknown parameter", { prompt: "x", executor: "http" }, 422, "executor", "unknown_parameter", /Unknown parameter: 'executor'/],
  ["n as a string", { prompt: "x", n: "2" }, 422, "n", "invalid_type", /'n'.*expected number/],
  ["n above the API's 10", { prompt: "x", n: 11 }, 422, "n", "invalid_value", /'n'.*<=10/],
  ["partial_images 4", { prompt: "x", stream: true, partial_images: 4 }, 422, "partial_images", "invalid_value", /'partial_images'/],
  ["guidance_scale negative", { prompt: "x", guidance_scale: -1 }, 422, "guidance_scale", "invalid_value", /'guidance_scale'/],
  ["a JSON array body", [1, 2], 422, null, "invalid_type", /must be a JSON object/],
  ["n above the server limit", { prompt: "x", n: 5 }, 400, "n", "limit_exceeded", /at most 4 images/],
  ["malformed size", { prompt: "x", size: "big" }, 400, "size", "invalid_size", /expected 'WIDTHxHEIGHT'/],
  ["size above the limit", { prompt: "x", size: "512x512" }, 400, "size", "limit_exceeded", /limit of 256x256/],
  ["size off the model's multiple", { prompt: "x", size: "36x32" }, 400, "size", "invalid_size", /multiples of 8/],
  ["steps above the limit", { prompt: "x", num_inference_steps: 51 }, 400, "num_inference_steps", "limit_exceeded", /at most 50/],
  ["a size off the model's native one", { prompt: "x", size: "64x64" }, 400, "size", "limit_exceeded", /trained at 32x32 only.*allowed: 32x32 only/],
  ["a sampler that does not fit the model", { prompt: "x", scheduler: "dpmpp_2m" }, 400, "scheduler", "unsupported_value", /does not fit this model .*use one of: euler, ddim/],
  ["prompt too long", { prompt: "x".repeat(101) }, 400, "prompt", "limit_exceeded", /101 characters; the limit is 100/],
  ["another model", { prompt: "x", model: "dall-e-3" }, 404, "model", "model_not_found", /'dall-e-3' does not exist/],
  ["unknown scheduler", { prompt: "x", scheduler: "karras9000" }, 400, "scheduler", "unsupported_value", /Unknown scheduler 'karras9000'/],
  ["url while streaming", { prompt: "x", stream: true, response_format: "url" }, 400, "response_format", "unsupported_value", /cannot be streamed/],
  ["jpeg output", { prompt: "x", output_format: "jpeg" }, 400, "output_format", "unsupported_value", /returns PNG/],
  ["transparent background", { prompt: "x", background: "transparent" }, 400, "background", "unsupported_value", /opaque/],
];

describe("error paths, each with its status and an OpenAI-shaped message", () => {
  let server: OmniServer;
  let gate: GatedExecutor;
  before(async () => ({ server, gate } = await gatedServer()));
  after(() => server.close({ timeoutMs: 0 }));

  for (const [name, body, status, param, code, message] of BAD_BODIES) {
    test(`${status} for ${name}`, async () => {
      const res = await post(server, body);
      assert.equal(res.statusCode, status, res.body);
      const e = errorOf(res);
      assert.equal(e.type, "invalid_request_error");
      assert.equal(e.param, param);
      assert.equal(e.code, code);
      assert.match(e.message, message);
    });
  }

  test("400 for a body that is not JSON, 415 for another content type, 413 for an oversized body", async () => {
    const badJson = await server.app.inject({ method: "POST", url: "/v1/images/generations", headers: { ...auth, "content-type": "application/json" }, payload: "{prompt:" });
    assert.equal(badJson.statusCode, 400);
    assert.equal(errorOf(badJson).code, "invalid_json");
    const text = await server.app.inject({ method: "POST", url: "/v1/images/generations", headers: { ...auth, "content-type": "text/plain" }, payload: "a cat" });
    assert.equal(text.statusCode, 415);
    assert.match(errorOf(text).message, /application\/json/);
    const big = await post(server, { prompt: "x".repeat(3_000) });
    assert.equal(big.statusCode, 413);
    const e = errorOf(big);
    assert.equal(e.code, "request_too_large");
    assert.match(e.message, /limit of 2048 bytes/);
  });

  test("401 without a key, with a wrong one, or with another scheme; /health needs none", async () => {
    for (const [headers, code] of [
      [{}, "missing_api_key"],
      [{ authorization: "Bearer wrong" }, "invalid_api_key"],
      [{ authorization: `Basic ${KEY}` }, "invalid_api_key"],
    ] as const) {
      const res = await post(server, { prompt: "x" }, headers);
      assert.equal(res.statusCode, 401);
      assert.equal(res.headers["www-authenticate"], 'Bearer realm="omni-diffusion"');
      assert.equal(errorOf(res).code, code);
    }
    for (const url of ["/v1/models", "/metrics", "/v1/images/files/img_x", "/v1/nothing"]) {
      assert.equal((await server.app.inject({ method: "GET", url })).statusCode, 401, url);
    }
    assert.equal((await server.app.inject({ method: "GET", url: "/health" })).statusCode, 200);
  });

  test("404 for an unknown URL, an unknown image file and an unknown model", async () => {
    const cases: [string, string, RegExp][] = [
      ["/v1/images/edits", "unknown_url", /Unknown request URL: GET \/v1\/images\/edits/],
      ["/v1/images/files/img_doesnotexist", "file_not_found", /expired .* or never existed/],
      ["/v1/models/dall-e-3", "model_not_found", /'dall-e-3' does not exist/],
    ];
    for (const [url, code, message] of cases) {
      const res = await server.app.inject({ method: "GET", url, headers: auth });
      assert.equal(res.statusCode, 404, url);
      assert.equal(errorOf(res).code, code);
      assert.match(errorOf(res).message, message);
    }
  });

  test("429 with Retry-After once the queue is full; the queued requests still complete", async () => {
    const running = post(server, { prompt: "running" });
    await gate.started(1);
    const queued = post(server, { prompt: "queued" });
    await until(() => server.engine.stats.queued === 1, "the second request to wait in the queue");
    const refused = await post(server, { prompt: "refused" });
    assert.equal(refused.statusCode, 429);
    assert.ok(Number(refused.headers["retry-after"]) >= 1, `Retry-After: ${refused.headers["retry-after"]}`);
    const e = errorOf(refused);
    assert.equal(e.type, "rate_limit_error");
    assert.equal(e.code, "queue_full");
    assert.match(e.message, /queue is full/);
    gate.release();
    assert.equal((await running).statusCode, 200);
    await gate.started(2);
    gate.release();
    assert.equal((await queued).statusCode, 200);
  });

  test("503 for generation and /health once the executor reports a failure", async () => {
    const { server: s, gate: g } = await gatedServer();
    try {
      g.fail(new WorkerDiedError("every worker rank died"));
      const res = await post(s, { prompt: "x" });
      assert.equal(res.statusCode, 503);
      const e = errorOf(res);
      assert.equal(e.type, "server_error");
      assert.equal(e.code, "unhealthy");
      assert.match(e.message, /every worker rank died/);
      const health = await s.app.inject({ method: "GET", url: "/health" });
      assert.equal(health.statusCode, 503);
      assert.match(errorOf(health).message, /executor failed .*every worker rank died/);
    } finally {
      await s.close({ timeoutMs: 0 });
    }
  });
});

describe("graceful close", () => {
  test("refuses new requests with 503 while the one in flight completes", async () => {
    const { server, gate } = await gatedServer();
    const inFlight = post(server, { prompt: "in flight", seed: 1 });
    await gate.started(1);
    const closed = server.close({ timeoutMs: 60_000 });
    const refused = await post(server, { prompt: "too late" });
    assert.equal(refused.statusCode, 503);
    assert.equal(errorOf(refused).code, "shutting_down");
    gate.release();
    const res = await inFlight;
    assert.equal(res.statusCode, 200);
    assert.equal((JSON.parse(res.body) as { data: unknown[] }).data.length, 1);
    await closed;
    assert.ok(server.engine.isClosed, "the server closed the engine it created");
  });

  test("aborts what is still running when the shutdown deadline passes (503), then closes", async () => {
    const { server, gate } = await gatedServer();
    const inFlight = post(server, { prompt: "never released" });
    await gate.started(1);
    await server.close({ timeoutMs: 50 });
    const res = await inFlight;
    assert.equal(res.statusCode, 503);
    const e = errorOf(res);
    assert.equal(e.code, "shutting_down");
    assert.match(e.message, /shut down before the request finished/);
  });
});
