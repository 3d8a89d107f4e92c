/**
 * Issue 9 findings 7, 8 and 15 on `serve`: nothing internal leaks to a client (paths, onnxruntime details,
 * links built from a forged Host), deep JSON is a 400, and bodies the server cannot read as UTF-8 JSON
 * are refused rather than misread.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { gzipSync } from "node:zlib";
import { OmniServer, WorkerError, type OpenAIErrorBody, type ServerOptions } from "../../src/index.js";
import { GatedExecutor } from "../fixtures/server/gated-executor.js";
import { RawClient } from "../helpers/raw-http.js";
import { LogCapture } from "../helpers/server.js";

const KEY = "sekret";
const auth = { authorization: `Bearer ${KEY}` };

async function gated(extra: Partial<ServerOptions> = {}, logs?: LogCapture) {
  const server = await OmniServer.create({
    apiKey: KEY,
    logger: logs ? { level: "info", stream: logs.stream } : false,
    defaultMetrics: false,
    engineConfig: { executorClass: GatedExecutor, batchWindowMs: 0 },
    ...extra,
  });
  return { server, gate: server.engine.executor as GatedExecutor };
}

const post = (server: OmniServer, payload: string | Buffer, headers: Record<string, string> = {}) =>
  server.app.inject({ method: "POST", url: "/v1/images/generations", headers: { "content-type": "application/json", ...auth, ...headers }, payload });

/** GET /v1/models with the right key and a second Authorization header, sent as raw HTTP/1.1 on a listening server. */
async function twoAuthorizationHeaders(server: OmniServer): Promise<{ statusCode: number; body: string }> {
  const c = await RawClient.open(server.url ?? (await server.listen()));
  c.write(`GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${KEY}\r\nAuthorization: Bearer other\r\nConnection: close\r\n\r\n`);
  const answer = await c.closed;
  return { statusCode: Number(/^HTTP\/1\.1 (\d+)/.exec(answer)?.[1]), body: answer.slice(answer.indexOf("\r\n\r\n") + 4) };
}

const errorOf = (res: { body: string }) => (JSON.parse(res.body) as OpenAIErrorBody).error;

describe("serve leaks nothing internal (finding 7)", () => {
  const logs = new LogCapture();
  let server: OmniServer;
  let gate: GatedExecutor;
  before(async () => ({ server, gate } = await gated({}, logs)));
  after(() => server.close({ timeoutMs: 0 }));

  test("/v1/models names the model, not its path on the host", async () => {
    const res = await server.app.inject({ method: "GET", url: "/v1/models", headers: auth });
    assert.equal(res.statusCode, 200);
    const card = (JSON.parse(res.body) as { data: Record<string, unknown>[] }).data[0]!;
    assert.equal(card.root, undefined);
    assert.ok(!res.body.includes(process.cwd()), res.body);
    assert.ok(!res.body.includes("/"), `no path at all in ${res.body}`);
  });

  test("a 500 carries a generic message and the request id; the details go to the log only", async () => {
    const pending = post(server, JSON.stringify({ prompt: "a red circle" }));
    await gate.started(1);
    const internals = "Failed to allocate 137438953472 bytes at /opt/onnxruntime/core/framework/bfc_arena.cc node UNet/conv_in";
    gate.releaseWithError(new WorkerError(internals, { data: { rank: 0 } }));
    const res = await pending;
    assert.equal(res.statusCode, 500);
    const e = errorOf(res);
    const id = String(res.headers["x-request-id"]);
    assert.ok(!res.body.includes("onnxruntime") && !res.body.includes("137438953472"), res.body);
    assert.match(e.message, new RegExp(`request ${id}`));
    assert.equal(e.code, "worker");
    const line = await logs.waitFor((l) => JSON.stringify(l).includes("bfc_arena.cc"), "with the internal details");
    assert.equal(line.requestId, id);
  });

  test("url images link to a relative path, never to the Host header's server", async () => {
    const pending = post(server, JSON.stringify({ prompt: "a red circle", response_format: "url" }), { host: "evil.example" });
    await gate.started(2);
    gate.release();
    const res = await pending;
    assert.equal(res.statusCode, 200, res.body);
    const url = (JSON.parse(res.body) as { data: { url: string }[] }).data[0]!.url;
    assert.match(url, /^\/v1\/images\/files\/img_/);
  });

  test("with a public URL configured, url images link there", async () => {
    const { server: s, gate: g } = await gated({ publicBaseUrl: "https://images.example.com/" });
    try {
      const pending = post(s, JSON.stringify({ prompt: "a red circle", response_format: "url" }), { host: "evil.example" });
      await g.started(1);
      g.release();
      const url = (JSON.parse((await pending).body) as { data: { url: string }[] }).data[0]!.url;
      assert.match(url, /^https:\/\/images\.example\.com\/v1\/images\/files\/img_/);
    } finally {
      await s.close({ timeoutMs: 0 });
    }
  });
});

describe("serve refuses what it cannot read (findings 8, 15)", () => {
  let server: OmniServer;
  before(async () => ({ server } = await gated({ host: "127.0.0.1", port: 0 })));
  after(() => server.close({ timeoutMs: 0 }));

  const cases: [string, () => Promise<{ statusCode: number; body: string }>, number, string, RegExp][] = [
    ["JSON nested 5,000 levels", () => post(server, `{"prompt": "x", "user": ${"[".repeat(5_000)}${"]".repeat(5_000)}}`), 400, "json_too_deep", /deeper than 64 levels/],
    ["a gzip-encoded body", () => post(server, gzipSync(JSON.stringify({ prompt: "x" })), { "content-encoding": "gzip" }), 415, "unsupported_media_type", /Content-Encoding "gzip"/],
    ["a latin-1 body", () => post(server, Buffer.from('{"prompt": "caf\xe9"}', "latin1"), { "content-type": "application/json; charset=ISO-8859-1" }), 415, "unsupported_media_type", /charset "iso-8859-1"/],
    ["bytes that are not UTF-8", () => post(server, Buffer.from('{"prompt": "caf\xe9"}', "latin1")), 400, "invalid_json", /not valid UTF-8/],
    ["a __proto__ key", () => post(server, '{"prompt": "x", "__proto__": {"admin": true}}'), 400, "invalid_json", /__proto__/],
    // Over a real socket: inject() (light-my-request) joins repeated header values into one.
    ["two Authorization headers", () => twoAuthorizationHeaders(server), 401, "invalid_api_key", /exactly one/],
  ];
  for (const [what, send, status, code, message] of cases) {
    test(`${what}: ${status} ${code}`, async () => {
      const res = await send();
      assert.equal(res.statusCode, status, res.body);
      assert.equal(errorOf(res).code, code);
      assert.match(errorOf(res).message, message);
    });
  }

  test("an explicit UTF-8 charset, and the key with surrounding spaces, are fine", async () => {
    const res = await server.app.inject({ method: "GET", url: "/v1/models", headers: { authorization: `  bearer   ${KEY}  ` } });
    assert.equal(res.statusCode, 200);
    const bad = await post(server, JSON.stringify({ prompt: "x", n: "2" }), { "content-type": "application/json; charset=UTF-8" });
    assert.equal(bad.statusCode, 422, "parsed, then validated");
  });
});
