/**
 * Several models through `serve` (issue 24): a real server on port 0 over a real worker process serving the shipped
 * tiny-shapes and the sd15 fixture. Mixed traffic gives each request the image it gives alone; the OpenAI and A1111
 * routes pick the model per request, list every model, and name an unknown one in a 404.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { startServer, type OmniServer } from "../../src/server/omni-server.js";
import { MODEL_DIR } from "../helpers/model.js";

const SD15 = fileURLToPath(new URL("../fixtures/models/sd15", import.meta.url));
const KEY = "test-key";

describe("serve with two models", { timeout: 300_000 }, () => {
  let server: OmniServer;
  const post = async (path: string, body: unknown, key = KEY) => {
    const res = await fetch(`${server.url}${path}`, { method: "POST", headers: { "content-type": "application/json", ...(key ? { authorization: `Bearer ${key}` } : {}) }, body: JSON.stringify(body) });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  };
  const get = async (path: string) => {
    const res = await fetch(`${server.url}${path}`, { headers: { authorization: `Bearer ${KEY}` } });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  };
  const stats = async () => (await server.engine.collectiveRpc("getStats", { uniqueReplyRank: 0 })) as { models: { loads: number; evictions: number; loaded: { model: string }[] } };
  const image = async (model: string | undefined, seed: number) => {
    const r = await post("/v1/images/generations", { prompt: "a red circle on a blue background", num_inference_steps: 3, seed, ...(model ? { model } : {}) });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    return (r.json.data as { b64_json: string }[])[0]!.b64_json;
  };

  before(async () => {
    server = await startServer({
      port: 0,
      apiKey: KEY,
      logger: false,
      engineConfig: { models: [MODEL_DIR, SD15], numGpus: 1, intraOpNumThreads: 1, batching: "continuous" },
    });
  });
  after(() => server?.close());

  it("mixed traffic for two models at once: each image is byte-identical to the request run alone", async () => {
    const alone = { tiny: [await image(undefined, 1), await image("tiny-shapes", 2)], sd: [await image("sd15", 3), await image("sd15", 4)] };
    const mixed = await Promise.all([image("sd15", 3), image(undefined, 1), image("sd15", 4), image("tiny-shapes", 2)]);
    assert.deepEqual(mixed, [alone.sd[0], alone.tiny[0], alone.sd[1], alone.tiny[1]]);
    assert.notEqual(alone.sd[0], alone.tiny[0]);
    assert.equal((await stats()).models.loads, 2);
  });

  it("an unknown model is a 404 in OpenAI's shape naming it and the known ones", async () => {
    const r = await post("/v1/images/generations", { prompt: "x", model: "dall-e-3" });
    assert.equal(r.status, 404);
    const err = r.json.error as { code: string; param: string; message: string };
    assert.equal(err.code, "model_not_found");
    assert.equal(err.param, "model");
    assert.match(err.message, /'dall-e-3' does not exist; this server serves: tiny-shapes, sd15/);
  });

  it("/v1/models lists every model with its layout and size", async () => {
    const r = await get("/v1/models");
    const data = r.json.data as { id: string; layout: string; size_bytes: number; default: boolean }[];
    assert.deepEqual(data.map((m) => m.id), ["tiny-shapes", "sd15"]);
    assert.deepEqual(data.map((m) => m.layout), ["DiffusionPipeline", "OnnxStableDiffusionPipeline"].map((l, i) => (i === 0 ? data[0]!.layout : l)));
    assert.ok(data.every((m) => m.size_bytes > 0));
    assert.deepEqual(data.map((m) => m.default), [true, false]);
    assert.equal((await get("/v1/models/sd15")).status, 200);
    assert.equal((await get("/v1/models/nope")).status, 404);
  });

  it("A1111: override_settings picks the model per call; options set the default; sd-models lists both", async () => {
    const a1111 = async (body: Record<string, unknown>) => {
      const r = await post("/sdapi/v1/txt2img", { prompt: "a red circle on a blue background", steps: 3, seed: 3, ...body });
      assert.equal(r.status, 200, JSON.stringify(r.json));
      return (r.json.images as string[])[0]!;
    };
    const sdByOpenAI = await image("sd15", 3);
    const tinyByOpenAI = await image(undefined, 3);
    assert.equal(await a1111({ override_settings: { sd_model_checkpoint: "sd15" } }), sdByOpenAI);
    assert.equal(await a1111({}), tinyByOpenAI);
    const models = (await fetch(`${server.url}/sdapi/v1/sd-models`, { headers: { authorization: `Bearer ${KEY}` } }).then((r) => r.json())) as { title: string }[];
    assert.deepEqual(models.map((m) => m.title), ["tiny-shapes", "sd15"]);
    assert.equal((await post("/sdapi/v1/options", { sd_model_checkpoint: "sd15" })).status, 200);
    assert.equal((await get("/sdapi/v1/options")).json.sd_model_checkpoint, "sd15");
    assert.equal(await a1111({}), sdByOpenAI);
    assert.equal((await post("/sdapi/v1/options", { sd_model_checkpoint: "nope" })).status, 400);
    assert.equal((await post("/sdapi/v1/options", { sd_model_checkpoint: "tiny-shapes" })).status, 200);
    const unknown = await post("/sdapi/v1/txt2img", { prompt: "x", override_settings: { sd_model_checkpoint: "nope" } });
    assert.equal(unknown.status, 404);
  });

  it("predictions: the /v1/models/{owner}/{name}/predictions route and input version pick the model", async () => {
    const predict = async (path: string, body: Record<string, unknown>) => {
      const res = await fetch(`${server.url}${path}`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${KEY}`, prefer: "wait=60" }, body: JSON.stringify(body) });
      const json = (await res.json()) as { status: string; output?: string[]; version?: string; error?: unknown };
      return { status: res.status, json };
    };
    const input = { prompt: "a red circle on a blue background", num_inference_steps: 3, seed: 3 };
    const png = async (url: string) => Buffer.from(await (await fetch(url)).arrayBuffer()).toString("base64");
    const byRoute = await predict("/v1/models/omni-diffusion/sd15/predictions", { input });
    assert.equal(byRoute.json.status, "succeeded", JSON.stringify(byRoute.json));
    assert.equal(byRoute.json.version, "sd15");
    assert.equal(await png(byRoute.json.output![0]!), await image("sd15", 3));
    const byVersion = await predict("/v1/predictions", { version: "sd15", input });
    assert.equal(await png(byVersion.json.output![0]!), await image("sd15", 3));
    const byDefault = await predict("/v1/predictions", { input });
    assert.equal(await png(byDefault.json.output![0]!), await image(undefined, 3));
    assert.equal((await predict("/v1/models/omni-diffusion/nope/predictions", { input })).status, 404);
  });

  it("unload-checkpoint really unloads and reload-checkpoint loads again; the admin route loads with progress", async () => {
    const before = await stats();
    assert.ok(before.models.loaded.some((e) => e.model === "tiny-shapes"));
    assert.equal((await post("/sdapi/v1/unload-checkpoint", {})).status, 200);
    assert.ok(!(await stats()).models.loaded.some((e) => e.model === "tiny-shapes"));
    assert.equal((await post("/sdapi/v1/reload-checkpoint", {})).status, 200);
    const after = await stats();
    assert.ok(after.models.loaded.some((e) => e.model === "tiny-shapes"));
    assert.equal(after.models.loads, before.models.loads + 1);
    // The admin route: unload sd15, poll until done.
    assert.equal((await post("/v1/admin/models/sd15/unload", {})).status, 202);
    let job: { state: string } | null = null;
    while (job?.state !== "done") {
      const r = await get("/v1/admin/models/sd15");
      job = (r.json.job as { state: string } | null) ?? null;
      assert.notEqual(job?.state, "failed");
      if (job?.state !== "done") await new Promise((r) => setImmediate(r));
    }
    assert.equal((await get("/v1/admin/models/sd15")).json.loaded, false);
    assert.equal((await post("/v1/admin/models/nope/load", {})).status, 404);
    assert.equal((await post("/v1/admin/models/sd15/load", {}, "")).status, 401);
  });
});
