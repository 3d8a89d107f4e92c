/**
 * Issue 23: the official `replicate` client (1.4.0), unchanged but for `baseUrl`, against a real server on
 * port 0 running the shipped tiny-shapes model. Steps are gated (test/fixtures/workers/step-gate.ts) where a
 * test needs a prediction to stay queued or running, and time is a manual clock, so nothing races the machine.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { PNG } from "pngjs";
import Replicate, { parseProgressFromLogs } from "replicate";
import { startServer, type OmniServer } from "../../src/index.js";
import { until } from "../helpers/server.js";
import { ManualClock } from "../helpers/manual-clock.js";
import { STEP_GATE, stepGate, type StepGateControl } from "../helpers/step-gate.js";

const KEY = "replicate-test-key";
const MODEL = "omni-diffusion/tiny-shapes";
const input = (seed: number, steps = 4) => ({ prompt: "a red circle on a blue background", num_inference_steps: steps, seed });

type Prediction = { id: string; status: string; output: string[] | null; logs: string; error: string | null; started_at: string | null; completed_at: string | null; urls: { get: string; cancel: string; stream: string }; metrics: Record<string, number> };

async function png(url: string): Promise<PNG> {
  const res = await fetch(url); // capability URL: no key, as the client's FileOutput fetches it
  assert.equal(res.status, 200, `GET ${url}`);
  assert.equal(res.headers.get("content-type"), "image/png");
  return PNG.sync.read(Buffer.from(await res.arrayBuffer()));
}

describe("predictions API with the official replicate client", { timeout: 180_000 }, () => {
  let server: OmniServer;
  let replicate: Replicate;
  let gate: StepGateControl;
  const clock = new ManualClock(Date.UTC(2026, 0, 1));
  const raw = (path: string, init: RequestInit = {}) =>
    fetch(`${server.url}${path}`, { ...init, headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json", ...(init.headers as Record<string, string>) } });
  const get = async (id: string) => (await replicate.predictions.get(id)) as unknown as Prediction;
  /** Resolves once the prediction's logs show that its first step is done (the gate holds it there). */
  const heldAtStep1 = (id: string) => until(async () => / 1\/\d+/.test((await get(id)).logs), `${id} at step 1`);

  before(async () => {
    server = await startServer({
      port: 0,
      apiKey: KEY,
      logger: false,
      clock,
      // maxBatchSize 1: the runner keeps 2 predictions in the engine, so a third stays queued.
      engineConfig: { numGpus: 1, intraOpNumThreads: 1, workerExtension: STEP_GATE, limits: { maxBatchSize: 1, maxQueue: 5 } },
    });
    replicate = new Replicate({ auth: KEY, baseUrl: `${server.url}/v1` });
    gate = stepGate(server.engine);
  });
  after(async () => {
    await gate?.release();
    await server?.close();
  });

  it("predictions.create, wait, get: starting/processing → succeeded, with logs, metrics and image URLs served by us", async () => {
    const created = (await replicate.predictions.create({ model: MODEL, input: input(1) })) as unknown as Prediction;
    assert.match(created.id, /^[a-z2-7]{26}$/);
    assert.ok(["starting", "processing"].includes(created.status), created.status);
    assert.equal(created.urls.get, `${server.url}/v1/predictions/${created.id}`);
    const done = (await replicate.wait(created as never, { interval: 10 })) as unknown as Prediction;
    assert.equal(done.status, "succeeded");
    assert.deepEqual(parseProgressFromLogs(done.logs), { percentage: 1, current: 4, total: 4 });
    assert.equal(typeof done.metrics.predict_time, "number");
    assert.equal(done.metrics.image_count, 1);
    assert.equal(done.output!.length, 1);
    const img = await png(done.output![0]!);
    assert.deepEqual([img.width, img.height], [32, 32]);
    assert.deepEqual(await get(done.id), done);
    // The output and the stream are capability URLs: without the key (as above), but only with the token.
    const forged = done.output![0]!.replace(/\/files\/[a-z2-7]{26}\//, `/files/${"a".repeat(26)}/`);
    assert.equal((await fetch(forged)).status, 404);
    assert.equal((await fetch(done.urls.get)).status, 401, "the prediction itself needs the key");
  });

  it("replicate.run(owner/name) blocks with Prefer: wait and returns the outputs; same seed, same image", async () => {
    const a = (await replicate.run(MODEL, { input: { ...input(7), num_outputs: 2 } })) as string[];
    const b = (await replicate.run(MODEL, { input: input(7) })) as string[];
    const c = (await replicate.run(MODEL, { input: input(8) })) as string[];
    assert.equal(a.length, 2);
    const [a0, b0, c0] = await Promise.all([png(a[0]!), png(b[0]!), png(c[0]!)]);
    assert.ok(a0.data.equals(b0.data), "seed 7 twice gives the same pixels");
    assert.ok(!a0.data.equals(c0.data), "seed 8 gives another image");
  });

  it("replicate.stream: logs, the output URL, then done", async () => {
    const events: { event: string; data: string }[] = [];
    for await (const e of replicate.stream(MODEL, { input: input(3, 8) })) events.push({ event: e.event, data: String(e.data) });
    const names = events.map((e) => e.event);
    assert.equal(names.at(-1), "done");
    assert.equal(names.at(-2), "output");
    assert.ok(names.includes("logs"));
    const output = events.find((e) => e.event === "output")!.data;
    assert.match(output, /^http:\/\/127\.0\.0\.1:\d+\/v1\/predictions\/[a-z2-7]{26}\/files\/[a-z2-7]{26}\/0\.png$/);
    assert.equal((await png(output)).width, 32);
    assert.match(events.filter((e) => e.event === "logs").map((e) => e.data).join(""), / 8\/8/);
  });

  it("img2img and inpainting: image and mask as data URLs; a non-PNG or a URL to fetch is a 422 naming the field", async () => {
    const [src] = (await replicate.run(MODEL, { input: input(71) })) as string[];
    const png = Buffer.from(await (await fetch(src!)).arrayBuffer());
    const mask = new PNG({ width: 32, height: 32 });
    for (let i = 0; i < 32 * 32; i++) mask.data.set(i % 32 < 16 ? [255, 255, 255, 255] : [0, 0, 0, 255], i * 4); // repaint the left half
    const dataUrl = (b: Buffer) => `data:image/png;base64,${b.toString("base64")}`;
    const edited = (await replicate.run(MODEL, { input: { prompt: "a yellow star on a black background", num_inference_steps: 4, seed: 2, image: dataUrl(png), mask: dataUrl(PNG.sync.write(mask)), strength: 1 } })) as string[];
    const [before, after] = [PNG.sync.read(png), await (async () => PNG.sync.read(Buffer.from(await (await fetch(edited[0]!)).arrayBuffer())))()];
    assert.deepEqual([after.width, after.height], [32, 32]);
    // The kept right half is pasted back exactly; the repainted left half changed.
    const half = (img: PNG, left: boolean) => Buffer.concat(Array.from({ length: 32 }, (_, y) => img.data.subarray((y * 32 + (left ? 0 : 16)) * 4, (y * 32 + (left ? 16 : 32)) * 4)));
    assert.ok(half(after, false).equals(half(before, false)), "the kept half is unchanged");
    assert.ok(!half(after, true).equals(half(before, true)), "the masked half was repainted");
    for (const [image, why] of [["data:image/jpeg;base64,/9j/4AAQSkZJRg==", /not a PNG/], ["https://example.com/in.png", /not fetched/]] as const) {
      const res = await raw("/v1/predictions", { method: "POST", body: JSON.stringify({ input: { prompt: "x", image } }) });
      const body = (await res.json()) as { status: number; detail: string; invalid_fields: { field: string }[] };
      assert.equal(res.status, 422);
      assert.equal(body.invalid_fields[0]!.field, "input.image");
      assert.match(body.detail, why);
    }
  });

  it("a stream open as the prediction starts gets `preview` events: PNG data URLs of the image being denoised", async () => {
    await gate.hold(1);
    let fillers: Prediction[] = [];
    try {
      fillers = [(await replicate.predictions.create({ model: MODEL, input: input(61) })) as unknown as Prediction, (await replicate.predictions.create({ model: MODEL, input: input(62) })) as unknown as Prediction];
      const watched = (await replicate.predictions.create({ model: MODEL, input: input(63, 8) })) as unknown as Prediction;
      assert.equal(watched.status, "starting");
      const stream = await fetch(watched.urls.stream); // subscribed once the headers are here
      assert.equal(stream.headers.get("content-type"), "text/event-stream; charset=utf-8");
      await gate.release();
      for (const f of fillers) await replicate.predictions.cancel(f.id);
      const text = await stream.text();
      const previews = [...text.matchAll(/event: preview\ndata: data:image\/png;base64,(\S+)/g)].map((m) => PNG.sync.read(Buffer.from(m[1]!, "base64")));
      assert.ok(previews.length >= 2 && previews.length <= 3, `${previews.length} previews`);
      assert.ok(previews.every((p) => p.width > 0 && p.height > 0));
      assert.match(text, /event: output\ndata: http:\/\/[^\n]+\/0\.png\n\nevent: done\ndata: \{\}\n\n$/);
    } finally {
      await gate.release();
      for (const f of fillers) await replicate.predictions.cancel(f.id);
    }
  });

  it("cancel: a queued prediction is canceled without starting; a running one stops at its next step", async () => {
    await gate.hold(1);
    try {
      const running = (await replicate.predictions.create({ model: MODEL, input: input(11, 6) })) as unknown as Prediction;
      const second = (await replicate.predictions.create({ model: MODEL, input: input(12, 6) })) as unknown as Prediction;
      const queued = (await replicate.predictions.create({ model: MODEL, input: input(13, 6) })) as unknown as Prediction;
      await heldAtStep1(running.id);
      assert.equal((await get(queued.id)).status, "starting", "the third waits in the store (2 in the engine)");
      const q = (await replicate.predictions.cancel(queued.id)) as unknown as Prediction;
      assert.equal(q.status, "canceled");
      assert.equal(q.started_at, null);
      await replicate.predictions.cancel(running.id);
      await until(async () => (await get(running.id)).status === "canceled", "running prediction canceled");
      const r = await get(running.id);
      assert.ok(r.started_at);
      assert.match(r.logs, / 1\/6\n[\s\S]*Canceled while running/);
      assert.doesNotMatch(r.logs, / 6\/6/);
      assert.equal(r.output, null);
      await replicate.predictions.cancel(second.id);
      await until(async () => (await get(second.id)).status === "canceled", "second prediction canceled");
    } finally {
      await gate.release();
    }
  });

  it("Prefer: wait both ways: done in time → the final prediction; still running at the deadline → the running one", async () => {
    const inTime = await raw("/v1/predictions", { method: "POST", headers: { prefer: "wait=5" }, body: JSON.stringify({ input: input(21) }) });
    assert.equal(inTime.status, 201);
    assert.equal(((await inTime.json()) as Prediction).status, "succeeded", "the clock never reached 5 s, so the call waited for the end");
    await gate.hold(1);
    try {
      const timers = clock.timers.length;
      const pending = raw("/v1/predictions", { method: "POST", headers: { prefer: "wait=5" }, body: JSON.stringify({ input: input(22) }) });
      await clock.armed(timers + 1); // the call's wait timer
      await until(async () => {
        const list = (await replicate.predictions.list()).results as unknown as Prediction[];
        return / 1\/4/.test(list[0]!.logs);
      }, "held at step 1");
      clock.advance(5_000);
      const res = await pending;
      const p = (await res.json()) as Prediction;
      assert.equal(res.status, 201);
      assert.equal(p.status, "processing");
      assert.equal(p.output, null);
      await gate.release();
      await until(async () => (await get(p.id)).status === "succeeded", "it finishes after the call returned");
    } finally {
      await gate.release();
    }
  });

  it("Cancel-After: aborted if it had not started, canceled if it had", async () => {
    await gate.hold(1);
    try {
      const post = async (headers: Record<string, string>, seed: number) =>
        (await (await raw("/v1/predictions", { method: "POST", headers, body: JSON.stringify({ input: input(seed) }) })).json()) as Prediction;
      const a = await post({ "cancel-after": "10s" }, 31); // runs, held at step 1
      const b = await post({}, 32); // the runner's second slot
      const e = await post({ "cancel-after": "2s" }, 33); // waits in the store
      await heldAtStep1(a.id);
      assert.equal((await get(e.id)).status, "starting");
      clock.advance(2_000);
      const aborted = await get(e.id);
      assert.equal(aborted.status, "aborted");
      assert.equal(aborted.started_at, null);
      assert.deepEqual(aborted.metrics, { total_time: 2 });
      assert.equal((await get(a.id)).status, "processing");
      clock.advance(8_000);
      await until(async () => (await get(a.id)).status === "canceled", "a canceled at its deadline");
      const canceled = await get(a.id);
      assert.ok(canceled.started_at);
      assert.match(canceled.logs, /Cancel-After deadline passed while it ran/);
      await replicate.predictions.cancel(b.id);
      await until(async () => (await get(b.id)).status === "canceled", "b canceled");
    } finally {
      await gate.release();
    }
  });

  it("errors in Replicate's shape: unknown input field 422, unknown id 404, wrong key 401, full queue 429 with Retry-After, oversized image 413", async () => {
    const unknown = await raw("/v1/predictions", { method: "POST", body: JSON.stringify({ input: { prompt: "x", colour: "red", cfg: 2 } }) });
    assert.equal(unknown.status, 422);
    const u = (await unknown.json()) as { title: string; detail: string; status: number; invalid_fields: { field: string }[] };
    assert.equal(u.status, 422);
    assert.equal(u.title, "Input validation failed");
    assert.deepEqual(u.invalid_fields.map((f) => f.field), ["input.colour", "input.cfg"]);

    const tooBig = await raw("/v1/predictions", { method: "POST", body: JSON.stringify({ input: { prompt: "x", width: 4096, height: 32 } }) });
    assert.equal(tooBig.status, 422);
    assert.equal(((await tooBig.json()) as { invalid_fields: { field: string }[] }).invalid_fields[0]!.field, "input.width");

    const missing = await raw("/v1/predictions/aaaaaaaaaaaaaaaaaaaaaaaaaa");
    assert.equal(missing.status, 404);
    assert.deepEqual(Object.keys((await missing.json()) as object).sort(), ["detail", "status", "title"]);

    const badModel = await raw("/v1/models/someone/other-model/predictions", { method: "POST", body: JSON.stringify({ input: input(1) }) });
    assert.equal(badModel.status, 404);

    // The cloud metadata address: refused by the SSRF guard whatever DNS says (test/predictions/webhooks-ssrf.test.ts has the rest).
    const refusedWebhook = await raw("/v1/predictions", { method: "POST", body: JSON.stringify({ input: input(1), webhook: "http://169.254.169.254/hook" }) });
    assert.equal(refusedWebhook.status, 422);
    assert.match(((await refusedWebhook.json()) as { detail: string }).detail, /webhook: 169\.254\.169\.254, a linkLocal address/);

    const wrongKey = await fetch(`${server.url}/v1/predictions`, { headers: { authorization: "Bearer nope" } });
    assert.equal(wrongKey.status, 401);
    assert.deepEqual(await wrongKey.json(), { title: "Unauthenticated", detail: "Incorrect API key provided.", status: 401 });

    const big = `data:image/png;base64,${"A".repeat(22 * 1024 * 1024)}`;
    const over = await raw("/v1/predictions", { method: "POST", body: JSON.stringify({ input: { prompt: "x", image: big } }) });
    assert.equal(over.status, 413);
    assert.match(((await over.json()) as { detail: string }).detail, /input\.image/);

    await gate.hold(0);
    const ids: string[] = [];
    try {
      for (let i = 0; i < 5; i++) ids.push(((await (await raw("/v1/predictions", { method: "POST", body: JSON.stringify({ input: input(40 + i) }) })).json()) as Prediction).id);
      const full = await raw("/v1/predictions", { method: "POST", body: JSON.stringify({ input: input(50) }) });
      assert.equal(full.status, 429);
      assert.match(full.headers.get("retry-after") ?? "", /^\d+$/);
      assert.equal(((await full.json()) as { title: string }).title, "Too many requests");
    } finally {
      for (const id of ids) await replicate.predictions.cancel(id);
      await gate.release();
    }
  });
});

describe("GET /v1/predictions: cursor pagination, newest first", { timeout: 180_000 }, () => {
  let server: OmniServer;
  let gate: StepGateControl;
  after(async () => {
    await gate?.release();
    await server?.close();
  });

  it("101 predictions: a page of 100, then a next page of 1, through the client's paginate", async () => {
    server = await startServer({ port: 0, logger: false, engineConfig: { numGpus: 1, intraOpNumThreads: 1, workerExtension: STEP_GATE } });
    gate = stepGate(server.engine);
    await gate.hold(0); // none finishes while we list
    const replicate = new Replicate({ auth: "unused", baseUrl: `${server.url}/v1` });
    const created: string[] = [];
    for (let i = 0; i < 101; i++) created.push(((await replicate.predictions.create({ model: MODEL, input: input(i) })) as unknown as Prediction).id);
    const pages: string[][] = [];
    for await (const page of replicate.paginate(replicate.predictions.list)) pages.push((page as unknown as Prediction[]).map((p) => p.id));
    assert.deepEqual(pages.map((p) => p.length), [100, 1]);
    assert.deepEqual(pages.flat(), [...created].reverse());
    const bad = await fetch(`${server.url}/v1/predictions?cursor=%%%`);
    assert.equal(bad.status, 400);
  });
});
