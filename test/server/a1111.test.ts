import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { PNG } from "pngjs";
import { OmniServer, startServer } from "../../src/index.js";
import { Command } from "commander";
import { addServeCommand } from "../../src/cli/serve-command.js";
import { checkApiKey } from "../../src/server/shared/api-key.js";
import { chooseSampler } from "../../src/server/a1111/a1111-samplers.js";
import { decodeB64Png } from "../helpers/server.js";
import { PIPELINE_EDITS_TODO, recordRequests, testPng } from "../fixtures/clients/edit-images.js";
import type { OmniDiffusionRequest } from "../../src/index.js";
import * as librechat from "../fixtures/clients/librechat.js";
import * as openWebui from "../fixtures/clients/open-webui.js";
import * as sillytavern from "../fixtures/clients/sillytavern.js";
import { STEP_GATE, stepGate } from "../helpers/step-gate.js";

const KEY = "a1111-key";
const AUTH = `someone:${KEY}`;
const basic = (auth: string) => `Basic ${Buffer.from(auth).toString("base64")}`;

describe("A1111 /sdapi/v1 replayed from the clients that speak it", () => {
  let server: OmniServer;
  let base: string;
  const post = (path: string, body: unknown, auth = basic(AUTH)) =>
    fetch(`${base}${path}`, { method: "POST", headers: { authorization: auth, "content-type": "application/json" }, body: JSON.stringify(body) });

  before(async () => {
    // The step gate (test/fixtures/workers/step-gate.ts) lets a test hold a job at a chosen step; open otherwise.
    server = await startServer({ port: 0, apiKey: KEY, limits: { maxSteps: 1_000 }, engineConfig: { numGpus: 1, intraOpNumThreads: 1, workerExtension: STEP_GATE }, logger: false });
    base = server.url!;
  });
  after(() => server.close());

  test("SillyTavern: connect, set model, generate with its default settings", async () => {
    const c = await sillytavern.connect(base, AUTH);
    assert.ok(c.samplers.includes("DDIM") && c.samplers.includes("Euler a") && c.samplers.includes("DPM++ 2M"));
    assert.ok(c.schedulers.includes("normal") && c.schedulers.includes("karras"));
    assert.deepEqual(c.models, [{ value: server.model.id, text: server.model.id }]);
    assert.deepEqual(c.vaes, []);
    assert.deepEqual(c.upscalers, ["None"]);
    assert.equal(c.model, server.model.id);
    assert.equal(await sillytavern.setModel(base, AUTH, server.model.id), true, "idle: progress 0 and job_count 0");
    const body = sillytavern.txt2imgBody(base, AUTH, "a red circle on a blue background", "blurry");
    assert.equal(body.url, base, "the forwarded body carries SillyTavern's own url and auth fields");
    const { format, data } = await sillytavern.generate(base, AUTH, body);
    assert.equal(format, "png");
    const png = decodeB64Png(data);
    assert.deepEqual([png.width, png.height], [32, 32], "512x512 is not servable by tiny-shapes: its native size runs");
  });

  test("Open WebUI: models, set model, txt2img with batch_size n; images and info as it reads them", async () => {
    const auth = openWebui.automatic1111Auth(AUTH);
    const models = await openWebui.getModels(base, auth);
    assert.deepEqual(models, [{ id: server.model.id, name: server.model.id }]);
    await openWebui.setImageModel(base, auth, server.model.id);
    const res = await openWebui.generateImages(base, auth, { prompt: "a green square on a white background", n: 2, size: "32x32", steps: 4, negative_prompt: null }, { seed: 42 });
    assert.equal(res.images.length, 2);
    for (const [bytes, mime] of res.images) {
      assert.equal(mime, "image/png");
      assert.equal(PNG.sync.read(bytes).width, 32);
    }
    const info = JSON.parse(res.info) as Record<string, unknown>;
    assert.deepEqual(info.all_seeds, [42, 43]);
    assert.equal(info.steps, 4);
    assert.equal(info.width, 32);
  });

  test("Open WebUI: a model name that is not served is refused (A1111 refuses an unknown checkpoint)", async () => {
    await assert.rejects(openWebui.setImageModel(base, openWebui.automatic1111Auth(AUTH), "sd_xl_base_1.0.safetensors"), /400/);
  });

  test("Open WebUI: its OpenAI edit request (multipart, data-URL image, blank model) works unchanged", async () => {
    const images = await openWebui.editImage(`${base}/v1`, KEY, {
      model: "",
      prompt: "a blue triangle on a red background",
      n: 1,
      size: "32x32",
      background: null,
      image: `data:image/png;base64,${testPng().toString("base64")}`,
    });
    assert.equal(images.length, 1);
    assert.equal(PNG.sync.read(images[0]![0]).width, 32);
  });

  test("LibreChat: its fixed 1024x1024 payload, Basic auth from the URL; info parsed as it parses it", async () => {
    const url = new URL(base);
    url.username = "librechat";
    url.password = KEY;
    const out = await librechat.call(url.toString().replace(/\/$/, ""), "a yellow star on a black background", "blurry, text");
    assert.equal(PNG.sync.read(out.buffer).width, 32);
    assert.deepEqual([out.width, out.height], [32, 32]);
    assert.equal(typeof out.seed, "number");
    assert.match(out.info!, /^Steps: 22, Sampler: DDIM, Schedule type: Automatic, CFG scale: 4\.5, Seed: \d+, Size: 32x32, Model: tiny-shapes/);
  });

  test("txt2img: n_iter × batch_size images with consecutive seeds; parameters echo the request", async () => {
    const res = await post("/sdapi/v1/txt2img", { prompt: "a white cross on a green background", seed: 7, batch_size: 2, n_iter: 2, steps: 3, sampler_name: "DPM++ 2M Karras", cfg_scale: 6, width: 32, height: 32, alwayson_scripts: {}, unknown_field: [1, 2] });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { images: string[]; parameters: Record<string, unknown>; info: string };
    assert.equal(body.images.length, 4);
    const info = JSON.parse(body.info) as Record<string, unknown>;
    assert.deepEqual(info.all_seeds, [7, 8, 9, 10]);
    assert.equal(info.sampler_name, "DPM++ 2M");
    assert.equal((info.extra_generation_params as Record<string, unknown>)["Schedule type"], "Karras");
    assert.equal((info.infotexts as string[]).length, 4);
    assert.equal(body.parameters.n_iter, 2);
    assert.equal(body.parameters.unknown_field !== undefined, true, "extra fields are ignored, not refused");
    assert.notEqual(body.images[0], body.images[2], "iteration 2 starts at seed 9");
  });

  test("seed -1 is random; send_images false returns no images", async () => {
    const res = await post("/sdapi/v1/txt2img", { prompt: "a red circle", seed: -1, steps: 2, send_images: false });
    const body = (await res.json()) as { images: string[]; info: string };
    assert.deepEqual(body.images, []);
    const seed = (JSON.parse(body.info) as { seed: number }).seed;
    assert.ok(Number.isInteger(seed) && seed >= 0);
  });

  test("wrong types are FastAPI's 422 {detail: [{loc, msg, type}]}; an unknown sampler is a 400 naming the valid ones", async () => {
    const bad = await post("/sdapi/v1/txt2img", { prompt: "a red circle", steps: "many" });
    assert.equal(bad.status, 422);
    const { detail } = (await bad.json()) as { detail: { loc: string[]; msg: string; type: string }[] };
    assert.deepEqual(detail[0]!.loc, ["body", "steps"]);
    const coerced = await post("/sdapi/v1/txt2img", { prompt: "a red circle", steps: "2", seed: "-1" });
    assert.equal(coerced.status, 200, "numeric strings are coerced, as pydantic does");
    const sampler = await post("/sdapi/v1/txt2img", { prompt: "a red circle", steps: 2, sampler_name: "Foo Bar" });
    assert.equal(sampler.status, 400);
    const e = (await sampler.json()) as { error: string; detail: string };
    assert.match(e.detail, /Sampler not found: 'Foo Bar'; use one of Euler a, Euler, DPM\+\+ 2M, DDIM/);
    const closest = await post("/sdapi/v1/txt2img", { prompt: "a red circle", steps: 2, sampler_name: "DPM++ SDE", scheduler: "Karras" });
    assert.equal((JSON.parse(((await closest.json()) as { info: string }).info) as { sampler_name: string }).sampler_name, "DPM++ 2M");
    const empty = await post("/sdapi/v1/txt2img", { prompt: "" });
    assert.equal(empty.status, 422);
    const steps = await post("/sdapi/v1/txt2img", { prompt: "a red circle", steps: 5_000 });
    assert.equal(steps.status, 400);
    assert.match(((await steps.json()) as { detail: string }).detail, /steps/);
  });

  test("auth: none, or a wrong key, is a 401 in A1111's shape; Bearer works too", async () => {
    const none = await fetch(`${base}/sdapi/v1/options`);
    assert.equal(none.status, 401);
    assert.match(none.headers.get("www-authenticate") ?? "", /^Basic/);
    assert.equal(typeof ((await none.json()) as { detail: string }).detail, "string");
    assert.equal((await fetch(`${base}/sdapi/v1/options`, { headers: { authorization: basic("u:wrong") } })).status, 401);
    assert.equal((await fetch(`${base}/sdapi/v1/sd-models`, { headers: { authorization: `Bearer ${KEY}` } })).status, 200);
  });

  test("img2img: init image with a data: prefix, mask, inpainting_mask_invert; info reports the denoising strength", async () => {
    const maskPng = new PNG({ width: 32, height: 32 });
    for (let i = 0; i < 32 * 32; i++) maskPng.data.set(i % 32 < 16 ? [255, 255, 255, 255] : [0, 0, 0, 255], i * 4);
    const res = await post("/sdapi/v1/img2img", {
      prompt: "a yellow star on a black background",
      init_images: [`data:image/png;base64,${testPng().toString("base64")}`],
      mask: PNG.sync.write(maskPng).toString("base64"),
      inpainting_mask_invert: 0,
      denoising_strength: 0.6,
      steps: 4,
      seed: 1,
      width: 32,
      height: 32,
      resize_mode: 0,
      mask_blur: 4,
      inpainting_fill: 1,
      inpaint_full_res: false,
    });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { images: string[]; info: string; parameters: Record<string, unknown> };
    assert.equal(decodeB64Png(body.images[0]!).width, 32);
    assert.equal((JSON.parse(body.info) as { denoising_strength: number }).denoising_strength, 0.6);
    assert.equal(body.parameters.init_images, null, "init images are not echoed back");
    const noImage = await post("/sdapi/v1/img2img", { prompt: "a red circle", steps: 2 });
    assert.equal(noImage.status, 422);
    const notPng = await post("/sdapi/v1/img2img", { prompt: "a red circle", steps: 2, init_images: ["/9j/4AAQSkZJRg=="] });
    assert.equal(notPng.status, 400);
    assert.match(((await notPng.json()) as { detail: string }).detail, /init_images: not a PNG/);
  });

  test("img2img hands the engine the decoded image, the mask (white → 255, or inverted) and denoising_strength", async () => {
    const rec = recordRequests<OmniDiffusionRequest>(server.engine);
    try {
      const maskPng = new PNG({ width: 32, height: 32 });
      for (let i = 0; i < 32 * 32; i++) maskPng.data.set(i % 32 < 16 ? [255, 255, 255, 255] : [0, 0, 0, 255], i * 4);
      const mask = PNG.sync.write(maskPng).toString("base64");
      const body = { prompt: "a yellow star", init_images: [`data:image/png;base64,${testPng().toString("base64")}`], mask, denoising_strength: 0.4, steps: 2, seed: 11, n_iter: 2 };
      assert.equal((await post("/sdapi/v1/img2img", body)).status, 200);
      assert.equal((await post("/sdapi/v1/img2img", { ...body, n_iter: 1, inpainting_mask_invert: 1 })).status, 200);
      const [a, b, inverted] = rec.seen as [OmniDiffusionRequest, OmniDiffusionRequest, OmniDiffusionRequest];
      assert.deepEqual([a.seed, b.seed, a.strength], [11, 12, 0.4]);
      assert.deepEqual([...a.image!.data.subarray(0, 3)], [220, 30, 20]);
      assert.deepEqual([a.mask!.data[0], a.mask!.data[31]], [255, 0], "white repaints");
      assert.deepEqual([inverted.mask!.data[0], inverted.mask!.data[31]], [0, 255], "inpainting_mask_invert: 1 repaints black");
    } finally {
      rec.restore();
    }
  });

  test("img2img inpainting keeps the unmasked half (mask white = repaint)", { todo: PIPELINE_EDITS_TODO }, async () => {
    const maskPng = new PNG({ width: 32, height: 32 });
    for (let i = 0; i < 32 * 32; i++) maskPng.data.set(i % 32 < 16 ? [255, 255, 255, 255] : [0, 0, 0, 255], i * 4);
    const res = await post("/sdapi/v1/img2img", { prompt: "a yellow star", init_images: [testPng().toString("base64")], mask: PNG.sync.write(maskPng).toString("base64"), denoising_strength: 1, steps: 4, seed: 2 });
    const out = decodeB64Png(((await res.json()) as { images: string[] }).images[0]!);
    for (let y = 0; y < 32; y++) for (let x = 16; x < 32; x++) assert.deepEqual([...out.data.subarray((y * 32 + x) * 4, (y * 32 + x) * 4 + 3)], [20, 30, 220]);
  });

  test("progress and interrupt on a 200-step job: a live preview, then the interrupted call returns it", async () => {
    // The job waits after step 21 until the interrupt aborts it (an abort opens the gate): it is surely
    // running, at exactly step 21 of 200, when progress and interrupt arrive, however fast the machine.
    const gate = stepGate(server.engine);
    await gate.hold(21);
    try {
      let requestId: string | null = null;
      const reachedStep = new Promise<void>((resolve) => {
        const sub = server.engine.onStep((e) => {
          requestId ??= e.requestId;
          // Previews come every 20 steps at 200 steps: the one of step 20 arrived before step 21.
          if (e.requestId === requestId && e.step >= 21) {
            sub.dispose();
            resolve();
          }
        });
      });
      const job = post("/sdapi/v1/txt2img", { prompt: "a red circle on a blue background", steps: 200, seed: 3 });
      await reachedStep;
      const p = (await (await fetch(`${base}/sdapi/v1/progress`, { headers: { authorization: basic(AUTH) } })).json()) as {
        progress: number;
        eta_relative: number;
        state: { job_count: number; sampling_step: number; sampling_steps: number; interrupted: boolean };
        current_image: string | null;
      };
      assert.ok(Math.abs(p.progress - (0.01 + 21 / 200)) < 1e-9, `progress ${p.progress}: A1111's 0.01 + 21/200`);
      assert.equal(p.state.sampling_step, 21);
      assert.equal(p.state.job_count, 1);
      assert.equal(p.state.sampling_steps, 200);
      assert.equal(p.state.interrupted, false);
      assert.ok(p.eta_relative >= 0);
      assert.equal(decodeB64Png(p.current_image!).width, 32, "current_image is the latest preview");
      const skip = (await (await fetch(`${base}/sdapi/v1/progress?skip_current_image=true`, { headers: { authorization: basic(AUTH) } })).json()) as { current_image: unknown };
      assert.equal(skip.current_image, null);
      // As SillyTavern sends it: POST without a body.
      assert.equal((await fetch(`${base}/sdapi/v1/interrupt`, { method: "POST", headers: { authorization: basic(AUTH) } })).status, 200);
      const res = await job;
      assert.equal(res.status, 200);
      const body = (await res.json()) as { images: string[] };
      assert.equal(body.images.length, 1, "the interrupted job returns its latest preview");
      assert.equal(decodeB64Png(body.images[0]!).width, 32);
      assert.equal(body.images[0], p.current_image, "held at step 21 and stopped at 22: the preview is still the one of step 20");
      const idle = (await (await fetch(`${base}/sdapi/v1/progress`, { headers: { authorization: basic(AUTH) } })).json()) as { progress: number; state: { job_count: number } };
      assert.deepEqual([idle.progress, idle.state.job_count], [0, 0]);
    } finally {
      await gate.release();
    }
  });

  test("hostile values in every known field are a 4xx or a 200, never a 5xx", async () => {
    const fields = ["prompt", "negative_prompt", "seed", "sampler_name", "sampler_index", "scheduler", "batch_size", "n_iter", "steps", "cfg_scale", "width", "height", "denoising_strength", "send_images", "init_images", "mask", "inpainting_mask_invert", "resize_mode", "include_init_images", "override_settings"];
    const values: unknown[] = ["x", "", 1.5, -3, 0, true, null, [], {}, 1e308, "1e400", ["x"], [1], "data:image/png;base64,AAAA"];
    for (const kind of ["txt2img", "img2img"]) {
      for (const field of fields) {
        for (const value of values) {
          const body = { prompt: "a red circle", steps: 1, send_images: false, init_images: [testPng().toString("base64")], [field]: value };
          const res = await post(`/sdapi/v1/${kind}`, body);
          assert.ok(res.status < 500, `${kind} ${field}=${JSON.stringify(value)}: ${res.status} ${await res.text()}`);
          await res.arrayBuffer().catch(() => undefined);
        }
      }
    }
  });

  test("a body over --max-upload-bytes is a 413 naming that limit, in A1111's shape", async () => {
    const small = await OmniServer.create({ port: 0, engine: server.engine, limits: { maxUploadBytes: 4_096 }, logger: false });
    try {
      const res = await small.app.inject({ method: "POST", url: "/sdapi/v1/img2img", headers: { "content-type": "application/json" }, payload: JSON.stringify({ prompt: "x", init_images: ["A".repeat(8_000)] }) });
      assert.equal(res.statusCode, 413);
      assert.match((res.json() as { detail: string }).detail, /4096 bytes/);
    } finally {
      await small.close();
    }
  });

  test("a1111: false (serve --no-a1111) serves no /sdapi routes", async () => {
    const off = await OmniServer.create({ port: 0, engine: server.engine, a1111: false, logger: false });
    try {
      const res = await off.app.inject({ method: "GET", url: "/sdapi/v1/options" });
      assert.equal(res.statusCode, 404);
    } finally {
      await off.close();
    }
  });
});

describe("A1111 helpers", () => {
  test("serve --no-a1111 and --max-upload-bytes are flags of the serve command", () => {
    const program = new Command();
    addServeCommand(program);
    const serve = program.commands.find((c) => c.name() === "serve")!;
    const flag = serve.options.find((o) => o.long === "--no-a1111");
    assert.ok(flag?.negate, "--no-a1111 negates a1111 (on by default)");
    assert.equal(flag.attributeName(), "a1111");
    assert.ok(serve.options.some((o) => o.long === "--max-upload-bytes" && o.required));
  });

  test("checkApiKey: Bearer, or Basic with the key as password and any user name; nothing else", () => {
    const b = (s: string) => `Basic ${Buffer.from(s).toString("base64")}`;
    assert.equal(checkApiKey(`Bearer ${KEY}`, KEY), null);
    assert.equal(checkApiKey(b(`anyone:${KEY}`), KEY), null);
    assert.equal(checkApiKey(b(`:${KEY}`), KEY), null, "an empty user name");
    assert.equal(checkApiKey(`basic   ${Buffer.from(`u:${KEY}`).toString("base64")}  `, KEY), null, "scheme case and spaces");
    assert.ok(checkApiKey(b(KEY), KEY), "no colon: no password");
    assert.ok(checkApiKey(b(`${KEY}:x`), KEY), "the key as user name is not the password");
    assert.ok(checkApiKey("Basic !!!", KEY));
    assert.ok(checkApiKey("Basic ", KEY), "SillyTavern's header with no auth set");
    assert.ok(checkApiKey([b(`u:${KEY}`), `Bearer ${KEY}`], KEY), "two headers");
  });

  test("chooseSampler: A1111 names, old-style Karras names, closest samplers, Automatic", () => {
    assert.deepEqual(chooseSampler("Euler a", null), { scheduler: "euler_a", unknown: false });
    assert.deepEqual(chooseSampler("DPM++ 2M Karras", null), { scheduler: "dpmpp_2m_karras", unknown: false });
    assert.deepEqual(chooseSampler("DPM++ 2M", "Karras"), { scheduler: "dpmpp_2m_karras", unknown: false });
    assert.deepEqual(chooseSampler("Euler", "karras"), { scheduler: "euler_karras", unknown: false });
    assert.deepEqual(chooseSampler("DDIM", "karras"), { scheduler: "ddim", unknown: false }, "no Karras DDIM: the schedule changes nothing");
    assert.deepEqual(chooseSampler("k_dpmpp_2m", "normal"), { scheduler: "dpmpp_2m", unknown: false });
    assert.deepEqual(chooseSampler("DPM++ 2M SDE Karras", null), { scheduler: "dpmpp_2m_karras", unknown: false });
    assert.deepEqual(chooseSampler("Heun", null), { scheduler: "euler", unknown: false });
    assert.deepEqual(chooseSampler("Automatic", "Automatic"), { scheduler: null, unknown: false });
    assert.deepEqual(chooseSampler(null, null), { scheduler: null, unknown: false });
    assert.deepEqual(chooseSampler("Foo", null), { scheduler: null, unknown: true });
  });
});
