/**
 * Issue 21 item 3: another site's page must not make a keyless `serve` run anything (multipart and text
 * POSTs are CORS "simple requests" that a browser sends without asking), and a keyless server answers only
 * the host names it knows (DNS rebinding). `--cors-origin` lets named origins in, with CORS headers.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Command } from "commander";
import { OmniServer, startServer } from "../../src/index.js";
import { addServeCommand } from "../../src/cli/serve-command.js";
import { HostAllowList, OriginAllowList, crossSiteRefusal } from "../../src/server/shared/site-guard.js";
import { recordRequests, testPng } from "../fixtures/clients/edit-images.js";

const PROMPT = "a red circle on a blue background";

/** A multipart edit as a cross-site `<form>` or `fetch(..., {mode: "no-cors"})` sends it. */
function editForm(): { payload: Buffer; contentType: string } {
  const boundary = "----x";
  const parts = [
    `--${boundary}\r\ncontent-disposition: form-data; name="prompt"\r\n\r\n${PROMPT}\r\n`,
    `--${boundary}\r\ncontent-disposition: form-data; name="num_inference_steps"\r\n\r\n1\r\n`,
    `--${boundary}\r\ncontent-disposition: form-data; name="image"; filename="a.png"\r\ncontent-type: image/png\r\n\r\n`,
  ];
  const payload = Buffer.concat([Buffer.from(parts.join("")), testPng(), Buffer.from(`\r\n--${boundary}--\r\n`)]);
  return { payload, contentType: `multipart/form-data; boundary=${boundary}` };
}

describe("cross-site requests and Host names (issue 21 item 3)", () => {
  let server: OmniServer;
  before(async () => {
    server = await startServer({ port: 0, logger: false, engineConfig: { numGpus: 1, intraOpNumThreads: 1 } });
  });
  after(() => server.close());

  test("a keyless server refuses another site's multipart edit, A1111 and text POSTs with a 403 in each API's shape; nothing runs", async () => {
    const rec = recordRequests(server.engine);
    try {
      const { payload, contentType } = editForm();
      const evil = { origin: "http://evil.example", "sec-fetch-site": "cross-site" };
      const edit = await server.app.inject({ method: "POST", url: "/v1/images/edits", headers: { ...evil, "content-type": contentType }, payload });
      assert.equal(edit.statusCode, 403);
      const e = edit.json() as { error: { code: string; param: string; message: string } };
      assert.equal(e.error.code, "cross_site_request");
      assert.equal(e.error.param, "origin");
      assert.match(e.error.message, /http:\/\/evil\.example.*--cors-origin http:\/\/evil\.example/);
      const gen = await server.app.inject({ method: "POST", url: "/v1/images/generations", headers: { ...evil, "content-type": "text/plain" }, payload: JSON.stringify({ prompt: PROMPT }) });
      assert.equal(gen.statusCode, 403);
      for (const url of ["/sdapi/v1/txt2img", "/sdapi/v1/interrupt", "/sdapi/v1/options"]) {
        const a = await server.app.inject({ method: "POST", url, headers: { ...evil, "content-type": "text/plain" }, payload: JSON.stringify({ prompt: PROMPT, steps: 1 }) });
        assert.equal(a.statusCode, 403, url);
        const body = a.json() as { error: string; detail: string };
        assert.equal(body.error, "PermissionError", "A1111's {error, detail, body, errors} shape");
        assert.match(body.detail, /cross-site request refused/);
      }
      assert.equal(rec.seen.length, 0, "no request reached the engine");
    } finally {
      rec.restore();
    }
  });

  test("a page on another port of the same host (same-site) is refused; an older browser's Origin alone is enough", async () => {
    const url = new URL(server.url!);
    const post = (headers: Record<string, string>) =>
      server.app.inject({ method: "POST", url: "/sdapi/v1/interrupt", headers: { host: url.host, ...headers } });
    assert.equal((await post({ origin: `http://${url.hostname}:9`, "sec-fetch-site": "same-site" })).statusCode, 403);
    assert.equal((await post({ origin: "http://evil.example" })).statusCode, 403, "Origin without Sec-Fetch-Site");
    assert.equal((await post({ origin: "null" })).statusCode, 403, "an opaque origin (sandboxed frame, file:)");
    assert.equal((await post({ origin: `http://${url.host}` })).statusCode, 200, "Origin equal to Host");
    assert.equal((await post({ origin: `http://${url.host}`, "sec-fetch-site": "same-origin" })).statusCode, 200, "the playground's own POSTs");
    assert.equal((await post({ "sec-fetch-site": "none" })).statusCode, 200, "typed by the user");
    assert.equal((await post({})).statusCode, 200, "a program (curl, an SDK) sends neither header");
    assert.equal((await server.app.inject({ method: "GET", url: "/v1/models", headers: { origin: "http://evil.example", "sec-fetch-site": "cross-site" } })).statusCode, 200, "reads are left to the browser's same-origin policy");
  });

  test("a real same-origin POST over the network (as the playground sends it) generates", async () => {
    const res = await fetch(`${server.url}/v1/images/generations`, {
      method: "POST",
      headers: { "content-type": "application/json", origin: server.url!, "sec-fetch-site": "same-origin" },
      body: JSON.stringify({ prompt: PROMPT, num_inference_steps: 1 }),
    });
    assert.equal(res.status, 200);
  });

  test("without a key, only IP addresses, localhost names, the bound host and --allowed-host names are answered", async () => {
    const get = (host: string, s: OmniServer = server) => s.app.inject({ method: "GET", url: "/v1/models", headers: { host } });
    for (const ok of ["127.0.0.1:8000", "localhost:8000", "LOCALHOST.", "app.localhost:8000", "[::1]:8000", "10.1.2.3", "[fe80::1]"]) assert.equal((await get(ok)).statusCode, 200, ok);
    const bad = await get("evil.example:8000");
    assert.equal(bad.statusCode, 403);
    const body = bad.json() as { error: { code: string; param: string; message: string } };
    assert.deepEqual([body.error.code, body.error.param], ["host_not_allowed", "host"]);
    assert.match(body.error.message, /--allowed-host evil\.example/);
    assert.equal((await server.app.inject({ method: "GET", url: "/health", headers: { host: "evil.example" } })).statusCode, 200, "health probes come with any Host");
    const a1111 = await server.app.inject({ method: "GET", url: "/sdapi/v1/progress", headers: { host: "evil.example" } });
    assert.equal(a1111.statusCode, 403);
    assert.equal((a1111.json() as { error: string }).error, "PermissionError");

    const named = await OmniServer.create({ engine: server.engine, logger: false, allowedHosts: ["serve.internal", ".corp.example"], host: "mybox.lan" });
    const keyed = await OmniServer.create({ engine: server.engine, logger: false, apiKey: "k" });
    try {
      for (const ok of ["serve.internal:8000", "corp.example", "a.b.corp.example", "mybox.lan:8000"]) assert.equal((await get(ok, named)).statusCode, 200, ok);
      assert.equal((await get("evilcorp.example", named)).statusCode, 403);
      const withKey = await keyed.app.inject({ method: "GET", url: "/v1/models", headers: { host: "evil.example", authorization: "Bearer k" } });
      assert.equal(withKey.statusCode, 200, "with a key the key decides");
    } finally {
      await Promise.all([named.close(), keyed.close()]);
    }
  });

  test("--cors-origin: that origin's POSTs run, with CORS headers, and its preflight is answered without the key", async () => {
    const app = "https://app.example.com";
    const allowed = await OmniServer.create({ engine: server.engine, logger: false, apiKey: "k", corsOrigins: [app] });
    try {
      const pre = await allowed.app.inject({ method: "OPTIONS", url: "/sdapi/v1/interrupt", headers: { origin: app, "access-control-request-method": "POST", "access-control-request-headers": "authorization,content-type" } });
      assert.equal(pre.statusCode, 204);
      assert.equal(pre.headers["access-control-allow-origin"], app);
      const post = await allowed.app.inject({ method: "POST", url: "/sdapi/v1/interrupt", headers: { origin: app, "sec-fetch-site": "cross-site", authorization: "Bearer k" } });
      assert.equal(post.statusCode, 200);
      assert.equal(post.headers["access-control-allow-origin"], app);
      assert.match(String(post.headers["access-control-expose-headers"]), /x-request-id/);
      const other = await allowed.app.inject({ method: "POST", url: "/sdapi/v1/interrupt", headers: { origin: "https://evil.example", "sec-fetch-site": "cross-site", authorization: "Bearer k" } });
      assert.equal(other.statusCode, 403, "a key does not make other sites' POSTs welcome: a browser may hold Basic credentials");
      assert.equal(other.headers["access-control-allow-origin"], undefined);
    } finally {
      await allowed.close();
    }
  });

  test("bad --cors-origin values are a ConfigError naming the field; '*' needs a key", async () => {
    await assert.rejects(OmniServer.create({ engine: server.engine, logger: false, corsOrigins: ["*"] }), /corsOrigins.*needs an apiKey/);
    await assert.rejects(OmniServer.create({ engine: server.engine, logger: false, corsOrigins: ["https://app.example.com/path"] }), /corsOrigins\.0.*must be an origin/);
    await assert.rejects(OmniServer.create({ engine: server.engine, logger: false, allowedHosts: ["http://x"] }), /allowedHosts\.0/);
  });

  test("serve's --cors-origin and --allowed-host repeat and take comma lists; --a1111-shared-progress is a switch", () => {
    const program = new Command();
    addServeCommand(program);
    const serve = program.commands.find((c) => c.name() === "serve")!;
    serve.action(() => undefined);
    program.parse(["node", "x", "serve", "--cors-origin", "https://a.example", "--cors-origin", "https://b.example,https://c.example", "--allowed-host", "box.lan", "--a1111-shared-progress"]);
    const o = serve.opts() as { corsOrigin: string[]; allowedHost: string[]; a1111SharedProgress: boolean };
    assert.deepEqual(o.corsOrigin, ["https://a.example", "https://b.example", "https://c.example"]);
    assert.deepEqual(o.allowedHost, ["box.lan"]);
    assert.equal(o.a1111SharedProgress, true);
  });

  test("the guards as functions: safe methods pass, the allow lists match exactly", () => {
    const none = new OriginAllowList([]);
    assert.equal(crossSiteRefusal("GET", { origin: "http://evil.example", "sec-fetch-site": "cross-site" }, none), null);
    assert.ok(crossSiteRefusal("DELETE", { origin: "http://evil.example", "sec-fetch-site": "cross-site" }, none));
    assert.ok(crossSiteRefusal("POST", { origin: "https://app.example.com.evil.example" }, new OriginAllowList(["https://app.example.com"])));
    const hosts = new HostAllowList([".example.com"]);
    assert.equal(hosts.allows("example.com"), true);
    assert.equal(hosts.allows("notexample.com"), false);
    assert.equal(new HostAllowList(["*"]).allows("anything.example"), true);
  });
});
