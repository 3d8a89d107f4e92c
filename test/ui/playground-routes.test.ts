import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { DiffusionEngine, OmniServer } from "../../src/index.js";
import { PLAYGROUND_DIR, assetBytes, loadStaticAssets } from "../../src/server/ui/static-assets.js";
import { rates, snapshot } from "../../playground/lib/metrics.js";
import { readSse } from "../../playground/lib/sse.js";
import { spawnServe } from "../helpers/serve-cli.js";
import { until } from "../helpers/server.js";
import { STEP_GATE, stepGate } from "../helpers/step-gate.js";
import { tempDir } from "../helpers/temp-dir.js";

// The playground's server side, over real HTTP: the public page, the authorized JSON routes, `ui: false`.
const KEY = "routes-test-key";
const auth = { authorization: `Bearer ${KEY}` };
let engine: DiffusionEngine;
let withUi: OmniServer;
let withoutUi: OmniServer;

before(async () => {
  // Request batching on one worker runs one batch at a time, so a second request really waits in the queue.
  // The step gate (test/fixtures/workers/step-gate.ts) lets a test hold a running request at a chosen step.
  engine = await DiffusionEngine.create({ numGpus: 1, intraOpNumThreads: 1, batching: "request", workerExtension: STEP_GATE });
  withUi = await OmniServer.create({ engine, port: 0, apiKey: KEY, logger: false });
  withoutUi = await OmniServer.create({ engine, port: 0, apiKey: KEY, logger: false, ui: false });
  await withUi.listen();
  await withoutUi.listen();
});
after(async () => {
  await withUi?.close();
  await withoutUi?.close();
  await engine?.close();
});

const get = (path: string, headers: Record<string, string> = {}) => fetch(`${withUi.url}${path}`, { headers });

test("the page and its scripts load without the key; the JSON routes and the API need it", async () => {
  const page = await get("/");
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-type") ?? "", /^text\/html/);
  assert.match(page.headers.get("content-security-policy") ?? "", /default-src 'self'/);
  assert.match(await page.text(), /data-testid="generate"/);
  const script = await get("/ui/lib/sse.js");
  assert.equal(script.status, 200);
  assert.match(script.headers.get("content-type") ?? "", /^text\/javascript/);
  const etag = script.headers.get("etag")!;
  assert.equal((await get("/ui/lib/sse.js", { "if-none-match": etag })).status, 304, "unchanged files revalidate cheaply");
  const missing = await get("/ui/no-such-file.js");
  assert.equal(missing.status, 404);
  assert.equal(((await missing.json()) as { error: { code: string } }).error.code, "unknown_url");
  for (const path of ["/ui/api/status", "/ui/api/progress/req-x", "/v1/models", "/metrics"]) {
    assert.equal((await get(path)).status, 401, `${path} needs the key`);
    assert.equal((await get(path, { authorization: "Bearer wrong" })).status, 401, `${path} refuses a wrong key`);
  }
});

test("every file the page refers to ships in the package, from this server: no CDN", async () => {
  const assets = await loadStaticAssets();
  const refs = new Set<string>();
  for (const [name, a] of assets) {
    const text = a.body.toString("utf8");
    if (name.endsWith(".html")) for (const m of text.matchAll(/(?:src|href)="([^"]+)"/g)) refs.add(m[1]!);
    if (name.endsWith(".js")) {
      for (const m of text.matchAll(/^import .* from "(\.[^"]+)";$/gm)) refs.add(new URL(m[1]!, `http://x/ui/${name}`).pathname);
    }
    assert.doesNotMatch(text, /(src|href)="https?:|from "https?:|@import|url\(http/, `${name} loads nothing from elsewhere`);
  }
  assert.ok(refs.size >= 8, `found the page's references: ${[...refs].join(", ")}`);
  for (const ref of refs) {
    if (ref.startsWith("data:")) continue;
    assert.equal((await get(ref)).status, 200, `${ref} is served`);
  }
  const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { files: string[] };
  assert.ok(pkg.files.includes("playground"), "package.json ships playground/");
  assert.equal(PLAYGROUND_DIR, fileURLToPath(new URL("../../playground/", import.meta.url)));
  const bytes = assetBytes(assets);
  assert.ok(bytes < 64 * 1024, `the playground stays small: ${bytes} bytes`);
});

test("status: the model's sizes and samplers, the executor, its endpoints and the queue", async () => {
  const res = await get("/ui/api/status", auth);
  assert.equal(res.status, 200);
  const s = (await res.json()) as Record<string, any>;
  assert.deepEqual(s.model.samplers, engine.modelLimits!.schedulers);
  assert.deepEqual(s.model.sizes, ["32x32"], "non-native sizes are not offered unless allowed");
  assert.equal(s.model.nativeSize, "32x32");
  assert.deepEqual(s.model.defaults, { steps: 20, guidance: 8, sampler: "ddim" });
  assert.deepEqual(s.executor, { name: "MultiprocExecutor", remote: false, batching: "request" });
  assert.deepEqual(s.endpoints, [{ endpoint: "rank-0", state: "ready", restarts: 0 }]);
  assert.deepEqual(s.queue, { depth: 0, running: 0 });
  assert.equal(s.refusal, null);
});

/** Starts a streamed generation; resolves once the server accepted it (SSE opened), with its id and events. */
async function startStream(body: Record<string, unknown>, signal: AbortSignal) {
  const res = await fetch(`${withUi.url}/v1/images/generations`, {
    method: "POST",
    headers: { "content-type": "application/json", ...auth },
    body: JSON.stringify({ prompt: "a red circle on a blue background", size: "32x32", stream: true, ...body }),
    signal,
  });
  assert.equal(res.status, 200);
  return { id: res.headers.get("x-request-id")!, events: readSse(res.body!) };
}

const progress = async (id: string) => (await (await get(`/ui/api/progress/${id}`, auth)).json()) as Record<string, unknown>;

test("progress: a running request reports its step, a waiting one its place in the queue", { timeout: 120_000 }, async () => {
  // The running request waits after its first step until the streams close (their aborts open the gate),
  // so it is surely still running, at step 1, through every poll below, however fast the machine.
  const gate = stepGate(engine);
  await gate.hold(1);
  const stop = new AbortController();
  try {
    const a = await startStream({ num_inference_steps: 150, seed: 1 }, stop.signal);
    await until(async () => ((await progress(a.id)).step as number) > 0, "the first request's first step", 60_000);
    const b = await startStream({ num_inference_steps: 149, seed: 2 }, stop.signal);
    await until(async () => (await progress(b.id)).state === "queued", "the second request to wait in the queue", 60_000);
    const pa = await progress(a.id);
    assert.equal(pa.state, "running");
    assert.equal(pa.totalSteps, 150);
    assert.equal(pa.step, 1);
    assert.deepEqual(await progress(b.id), { requestId: b.id, state: "queued", queuePosition: 1, queueDepth: 1, step: 0, totalSteps: null });
    assert.deepEqual(await progress("req-never-seen"), { requestId: "req-never-seen", state: "unknown", queuePosition: 0, queueDepth: 1, step: 0, totalSteps: null });
    const status = (await (await get("/ui/api/status", auth)).json()) as { queue: unknown };
    assert.deepEqual(status.queue, { depth: 1, running: 1 });
  } finally {
    stop.abort(); // both streams close; the server aborts both requests
    await gate.release();
  }
  await until(() => withUi.inFlight === 0 && engine.stats.inFlight === 0 && engine.stats.queued === 0, "the aborted requests to leave the engine", 60_000);
});

test("the page's SSE reader and metrics reader on the real server's stream and /metrics", { timeout: 60_000 }, async () => {
  const scrape = async () => snapshot(await (await get("/metrics", auth)).text(), Date.now());
  const before = await scrape();
  const run = await startStream({ num_inference_steps: 8, n: 2, partial_images: 2 }, new AbortController().signal);
  const kinds: string[] = [];
  for await (const ev of run.events) kinds.push(`${ev.event}:${(JSON.parse(ev.data) as { index: number }).index}`);
  assert.deepEqual(kinds.filter((k) => k.startsWith("image_generation.completed")).sort(), ["image_generation.completed:0", "image_generation.completed:1"]);
  assert.equal(kinds.filter((k) => k.startsWith("image_generation.partial_image")).length, 4, "2 partial images per image");
  assert.equal((await progress(run.id)).state, "unknown", "a finished request is forgotten");
  const after = await scrape();
  assert.equal(after.images - before.images, 2);
  const r = rates(before, after);
  assert.equal(r.rowsPerCall, 4, "2 images under guidance: 4 rows in each UNet call");
});

test("ui: false serves no page and no playground routes; the API is unchanged", async () => {
  for (const path of ["/", "/ui/app.js", "/ui/api/status"]) {
    assert.equal((await fetch(`${withoutUi.url}${path}`, { headers: auth })).status, 404, `${path} is not served`);
  }
  assert.equal((await fetch(`${withoutUi.url}/v1/models`, { headers: auth })).status, 200);
});

test("`serve --no-ui` turns the playground off", { timeout: 90_000 }, async () => {
  const { child, url } = await spawnServe(["--port", "0", "--workers", "1", "--threads", "1", "--no-ui", "--data-dir", tempDir("omni-serve-")]);
  try {
    assert.equal((await fetch(`${url}/`)).status, 404);
    assert.equal((await fetch(`${url}/v1/models`)).status, 200);
  } finally {
    child.kill("SIGTERM");
    if (child.exitCode === null) await new Promise((r) => child.once("exit", r));
  }
});
