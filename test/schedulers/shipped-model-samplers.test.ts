/**
 * The shipped model's sampler list as clients see it, through a real server (127.0.0.1:0, real workers): `pndm`
 * is not offered for tiny-shapes (PLMS draws wrong colours below 20 steps on this cosine v-prediction model), so
 * A1111's "PLMS" runs DDIM and says so in its sampler listing and reply; "DPM++ 2M Karras" runs as asked (SD's
 * Karras range from the model's scheduler config); a native request naming `pndm` is a 400 giving the reason.
 * Colours are judged by bench/lib/classify.ts, seeds fixed.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { after, before, describe, it } from "node:test";
import { classify } from "../../bench/lib/classify.js";
import { OmniServer, startServer } from "../../src/index.js";
import { decodeB64Png } from "../helpers/server.js";

const CLI = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));

describe("the shipped model's samplers through the servers", { timeout: 300_000 }, () => {
  let server: OmniServer;
  const post = (path: string, body: unknown) =>
    fetch(`${server.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

  before(async () => {
    server = await startServer({ port: 0, engineConfig: { numGpus: 1, intraOpNumThreads: 1 }, logger: false });
  });
  after(() => server.close());

  it("the model's limits leave pndm out and say why", () => {
    const limits = server.model.limits!;
    assert.ok(!limits.schedulers.includes("pndm"), limits.schedulers.join(", "));
    assert.ok(limits.schedulers.includes("dpmpp_2m_karras") && limits.schedulers.includes("ddim"));
    assert.match(limits.unfitSchedulers?.pndm ?? "", /PLMS .*wrong colours/);
  });

  it("GET /sdapi/v1/samplers: PLMS runs as DDIM here, with the reason; the others run as named", async () => {
    const list = (await (await fetch(`${server.url}/sdapi/v1/samplers`)).json()) as { name: string; options: Record<string, string> }[];
    const plms = list.find((s) => s.name === "PLMS")!;
    assert.equal(plms.options.runs_as, "DDIM");
    assert.match(plms.options.note!, /^pndm is not offered for this model: PLMS /);
    for (const s of list.filter((x) => x.name !== "PLMS")) assert.deepEqual(s.options, {}, s.name);
  });

  for (const [sampler, ran, schedule] of [
    ["PLMS", "DDIM", "Automatic"],
    ["DPM++ 2M Karras", "DPM++ 2M", "Karras"],
  ] as const) {
    it(`txt2img "${sampler}" at 8 steps runs ${ran} (${schedule}) and draws the prompt's colours`, async () => {
      const res = await post("/sdapi/v1/txt2img", { prompt: "a red circle on a blue background", sampler_name: sampler, steps: 8, seed: 100, batch_size: 2, width: 32, height: 32 });
      assert.equal(res.status, 200, await res.clone().text());
      const body = (await res.json()) as { images: string[]; info: string };
      const info = JSON.parse(body.info) as { sampler_name: string; extra_generation_params: Record<string, string> };
      assert.equal(info.sampler_name, ran);
      assert.equal(info.extra_generation_params["Schedule type"], schedule);
      for (const b64 of body.images) {
        const png = decodeB64Png(b64);
        const got = classify(new Uint8Array(png.data.filter((_, i) => i % 4 !== 3)), png.width);
        assert.deepEqual([got.foreground, got.background], ["red", "blue"]);
      }
    });
  }

  it("a native request naming pndm is a 400 that names the field and the reason", async () => {
    const res = await post("/v1/images/generations", { prompt: "a red circle on a blue background", size: "32x32", scheduler: "pndm" });
    assert.equal(res.status, 400);
    const err = ((await res.json()) as { error: { message: string; param?: string } }).error;
    assert.equal(err.param, "scheduler");
    assert.match(err.message, /scheduler "pndm" is not offered for this model: PLMS .*; use one of: euler, /);
  });

  it("omni-diffusion info says pndm is not offered, why, and what an A1111 request for it runs", async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", CLI, "info"], { timeout: 120_000 });
    assert.match(stdout, /^schedulers: euler, euler_karras, euler_a, euler_ancestral, ddim, dpmpp_2m, dpmpp_2m_karras, lcm \(those fitting v_prediction\)$/m);
    assert.match(stdout, /^ +not pndm: PLMS .*wrong colours.* \(an A1111 request for it runs ddim\)$/m);
  });
});
