/**
 * Issue 21 item 7: a client's string that names an Object.prototype member ("__proto__", "constructor",
 * "toString", ...) must never be found in a lookup table: sampler names (A1111 answered 500), OpenAI parameter
 * names (the error lost its `param`), request ids (the worker called "constructor" a duplicate), error names
 * from peers, model names and scheduler classes.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { DiffusionOutput, OmniDiffusionRequest, OmniError, OmniRequestOutput, OmniServer, createScheduler, resolveModelSpec } from "../../src/index.js";
import { deserializeError } from "../../src/errors/omni-error.js";
import { chooseSampler } from "../../src/server/a1111/a1111-samplers.js";
import type { WorkerServer } from "../../src/server/worker/worker-server.js";
import { PROTOTYPE_KEYS } from "../fuzz/runner.js";
import { startTestWorker } from "../helpers/worker-servers.js";

describe("prototype names are never looked up as table entries (issue 21 item 7)", () => {
  let server: OmniServer;
  let worker: WorkerServer;
  before(async () => {
    [server, worker] = await Promise.all([OmniServer.create({ port: 0, logger: false, engineConfig: { numGpus: 1, intraOpNumThreads: 1 } }), startTestWorker({ httpPort: 0 })]);
  });
  after(() => Promise.all([server?.close(), worker?.close()]));

  test("A1111 sampler_name / scheduler: a 400 naming the valid samplers (was a 500 for __proto__ and constructor)", async () => {
    for (const name of PROTOTYPE_KEYS) {
      assert.deepEqual(chooseSampler(name, null), { scheduler: null, unknown: true }, name);
      const res = await server.app.inject({ method: "POST", url: "/sdapi/v1/txt2img", headers: { "content-type": "application/json" }, payload: JSON.stringify({ prompt: "a red circle", steps: 1, send_images: false, sampler_name: name }) });
      assert.equal(res.statusCode, 400, `${name}: ${res.body}`);
      assert.match((res.json() as { detail: string }).detail, /Sampler not found/);
    }
  });

  test("OpenAI: an unknown parameter named like a prototype member is a 422 whose param names it", async () => {
    for (const name of PROTOTYPE_KEYS.filter((k) => k !== "__proto__")) {
      const res = await server.app.inject({ method: "POST", url: "/v1/images/generations", headers: { "content-type": "application/json" }, payload: JSON.stringify({ prompt: "a red circle", [name]: 1 }) });
      assert.equal(res.statusCode, 422, name);
      assert.equal((res.json() as { error: { param: string } }).error.param, name);
    }
  });

  test("worker: request ids named like prototype members generate (no false 'appears more than once')", async () => {
    const res = await fetch(`${worker.httpUrl}/v1/diffusion/generate`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ requests: PROTOTYPE_KEYS.filter((k) => k !== "__proto__").map((id) => ({ request_id: id, prompt: "a red circle", width: 32, height: 32, num_inference_steps: 1 })) }),
    });
    assert.equal(res.status, 200);
    const out = (await res.json()) as { outputs: { output: { request_id: string }[]; errors: Record<string, unknown> }[] };
    const ids = PROTOTYPE_KEYS.filter((k) => k !== "__proto__");
    assert.deepEqual(out.outputs.map((o) => o.errors), ids.map(() => ({})));
    assert.deepEqual(out.outputs.map((o) => o.output.map((i) => i.request_id)), ids.map((id) => [id]), "one image per request, each its own");
  });

  test('a request id "__proto__" is refused where requests are made, naming the field (it would set prototypes where ids key objects)', async () => {
    assert.throws(() => new OmniDiffusionRequest({ prompt: "x", requestId: "__proto__" }), (e: unknown) => e instanceof OmniError && e.code === "OMNI_ERR_VALIDATION" && /request_id|requestId/.test(e.message) && /__proto__/.test(e.message));
    const res = await fetch(`${worker.httpUrl}/v1/diffusion/generate`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ requests: [{ request_id: "__proto__", prompt: "a red circle", width: 32, height: 32, num_inference_steps: 1 }] }),
    });
    assert.equal(res.status, 400);
    assert.match(await res.text(), /request_id/);
  });

  test("a request whose id is a prototype name gets its own images, not Object.prototype's member as its error", () => {
    const request = new OmniDiffusionRequest({ prompt: "x", requestId: "constructor" });
    const image = { requestId: "constructor", index: 0, seed: 1, width: 1, height: 1, data: new Uint8Array(3) };
    const res = OmniRequestOutput.fromDiffusionOutput(request, new DiffusionOutput({ output: [image] }), () => new OmniError("no output"));
    assert.equal(res.error, null);
    assert.equal(res.images.length, 1);
  });

  test("error names from peers, model names and scheduler classes", () => {
    for (const name of PROTOTYPE_KEYS) {
      const err = deserializeError({ name, code: "OMNI_ERR_X", message: "m" });
      assert.equal(err.constructor, OmniError, name);
      assert.equal(err.data.remoteName, name);
      assert.throws(() => resolveModelSpec(name, { cwd: "/nonexistent" }), /not found|ConfigError|built-in/, name);
      assert.throws(() => createScheduler(null, { _class_name: name }), /is not supported/, name);
    }
  });
});
