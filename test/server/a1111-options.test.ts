/**
 * Issue 21 item 7: `POST /sdapi/v1/options` keeps the known options, of their types, only: the values are
 * shared by every client, so arbitrary JSON must not be stored (it was, under `sd_checkpoint_hash`, and any
 * unknown key was silently dropped). All or nothing: a refused body changes nothing.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { OmniServer } from "../../src/index.js";
import { GatedExecutor } from "../fixtures/server/gated-executor.js";

describe("A1111 options: known keys and types only (issue 21 item 7)", () => {
  let server: OmniServer;
  before(async () => {
    server = await OmniServer.create({ logger: false, defaultMetrics: false, engineConfig: { executorClass: GatedExecutor } });
  });
  after(() => server.close());

  const get = async () => (await server.app.inject({ method: "GET", url: "/sdapi/v1/options" })).json() as Record<string, unknown>;
  const post = (body: unknown) => server.app.inject({ method: "POST", url: "/sdapi/v1/options", headers: { "content-type": "application/json" }, payload: JSON.stringify(body) });

  test("posting the options back (Open WebUI) and changing a known one of the right type work", async () => {
    const before = await get();
    assert.equal((await post(before)).statusCode, 200);
    assert.equal((await post({ show_progress_every_n_steps: 5, live_previews_enable: false })).statusCode, 200);
    const after = await get();
    assert.deepEqual([after.show_progress_every_n_steps, after.live_previews_enable], [5, false]);
  });

  test("an unknown key is a 400 naming it and the known ones; arbitrary JSON in a known key is a 422; nothing is stored", async () => {
    const before = await get();
    const unknown = await post({ CLIP_stop_at_last_layers: 2, my_notes: { big: "x".repeat(1000) } });
    assert.equal(unknown.statusCode, 400);
    assert.match((unknown.json() as { detail: string }).detail, /^my_notes: unknown option; this server keeps only sd_model_checkpoint, /);
    const hash = await post({ sd_checkpoint_hash: { nested: [1, 2, 3] } });
    assert.equal(hash.statusCode, 422);
    assert.deepEqual((hash.json() as { detail: { loc: string[] }[] }).detail[0]!.loc, ["body", "sd_checkpoint_hash"]);
    for (const bad of [{ samples_format: "jpg" }, { CLIP_stop_at_last_layers: 1e9 }, { sd_vae: "v".repeat(10_000) }, { live_previews_enable: "yes" }]) {
      assert.equal((await post(bad)).statusCode, 422, JSON.stringify(bad).slice(0, 60));
    }
    for (const proto of ["constructor", "toString", "hasOwnProperty"]) assert.equal((await post({ [proto]: 1 })).statusCode, 400, proto);
    assert.equal((await post([1])).statusCode, 400);
    assert.deepEqual(await get(), before, "no refused body changed anything");
  });
});
