import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { Browser, Page } from "puppeteer-core";
import { DiffusionEngine, OmniServer } from "../../src/index.js";
import { STEP_GATE, stepGate, type StepGateControl } from "../helpers/step-gate.js";
import { ConsoleErrors, browserSkipReason, launchChromium } from "./browser.js";

// The playground's job list (issue 23) in headless Chromium against a real server: jobs are predictions kept
// in the server's store, so they outlive the page; a held job shows as running, the next one its place in
// line, and Cancel in the list cancels it on the server. The step gate holds a job at a chosen step.
const skip = browserSkipReason();
const KEY = "jobs-test-key";
const auth = { authorization: `Bearer ${KEY}` };

/** The DOM members the page-side callbacks touch (this project compiles without lib "dom"). */
interface DomEl {
  disabled: boolean;
  hidden: boolean;
  textContent: string | null;
  naturalWidth: number;
  dataset: Record<string, string>;
  querySelector(s: string): DomEl | null;
  querySelectorAll(s: string): DomEl[];
}
declare const document: { querySelector(s: string): DomEl | null; querySelectorAll(s: string): DomEl[]; getElementById(id: string): DomEl };

interface Prediction {
  id: string;
  status: string;
  queue_position: number | null;
  output: string[] | null;
}

let engine: DiffusionEngine;
let server: OmniServer;
let gate: StepGateControl;
let browser: Browser;
let page: Page;
let errors: ConsoleErrors;

before(async () => {
  if (skip) return;
  // Request batching, one row per batch: one job runs, the next waits in the engine's queue.
  engine = await DiffusionEngine.create({ numGpus: 1, intraOpNumThreads: 1, batching: "request", limits: { maxBatchSize: 1 }, workerExtension: STEP_GATE });
  server = await OmniServer.create({ engine, port: 0, apiKey: KEY, logger: false });
  await server.listen();
  gate = stepGate(engine);
  browser = await launchChromium();
  page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 900 });
  errors = new ConsoleErrors(page);
});
after(async () => {
  await gate?.release().catch(() => {});
  await browser?.close();
  await server?.close();
  await engine?.close();
});

const tid = (id: string) => `[data-testid="${id}"]`;
const job = (id: string) => `${tid("job")}[data-id="${id}"]`;
const api = async <T>(path: string, method = "GET"): Promise<T> => (await (await fetch(`${server.url}${path}`, { method, headers: auth })).json()) as T;
const newest = async () => (await api<{ results: Prediction[] }>("/v1/predictions")).results[0]!;

async function fill(id: string, value: string): Promise<void> {
  await page.click(tid(id), { clickCount: 3 });
  await page.keyboard.press("Backspace");
  await page.type(tid(id), value);
}

/** Submits the form and resolves with the id of the job row it added (the server's newest prediction). */
async function submit(prompt: string, seed: number): Promise<string> {
  const ids = () => page.$$eval(tid("job"), (els) => els.map((e) => (e as DomEl).dataset.id!));
  const before = await ids();
  await fill("prompt", prompt);
  await fill("steps", "4");
  await fill("seed", String(seed));
  await page.click(tid("generate"));
  await page.waitForFunction((n) => document.querySelectorAll('[data-testid="job"]').length > n, {}, before.length);
  const id = (await ids()).find((i) => !before.includes(i))!;
  assert.equal(id, (await newest()).id, "the row is the server's newest prediction");
  return id;
}

/** The text of a job's status line. */
const stateOf = (id: string) => page.$eval(`${job(id)} ${tid("job-status")}`, (e) => (e as DomEl).textContent ?? "");

test("jobs submitted from the page are listed from the server's store after a reload, with their images", { skip: skip ?? false, timeout: 180_000 }, async () => {
  await page.goto(`${server.url}/`, { waitUntil: "domcontentloaded" });
  await page.type(tid("api-key"), KEY);
  await page.click("#save-key");
  await page.waitForFunction(() => /tiny-shapes/.test(document.getElementById("status-model").textContent ?? ""));
  const first = await submit("a red circle on a blue background", 1);
  await page.waitForFunction(() => !document.querySelector('[data-testid="generate"]')!.disabled);
  const second = await submit("a yellow star on a black background", 2);
  await page.waitForFunction(() => !document.querySelector('[data-testid="generate"]')!.disabled);
  assert.equal((await api<Prediction>(`/v1/predictions/${second}`)).status, "succeeded");

  await page.reload({ waitUntil: "domcontentloaded" });
  // Both come back from GET /v1/predictions (the page kept nothing), newest first, each with its decoded image.
  await page.waitForFunction(
    (a, b) => [a, b].every((id) => [...document.querySelectorAll(`[data-testid="job"][data-id="${id}"] [data-testid="result-image"]`)].some((img) => img.naturalWidth === 32)),
    {},
    first,
    second,
  );
  const order = await page.$$eval(tid("job"), (els) => els.map((e) => (e as DomEl).dataset.id));
  assert.deepEqual(order, [second, first], "newest first, as the server lists them");
  const captions = await page.$$eval(`${tid("job")} figcaption strong`, (els) => els.map((e) => (e as DomEl).textContent));
  assert.deepEqual(captions, ["a yellow star on a black background", "a red circle on a blue background"]);
  assert.deepEqual(errors.take(), []);
});

test("a held job shows as running, the next one its queue position; Cancel in the list cancels it on the server", { skip: skip ?? false, timeout: 180_000 }, async () => {
  await gate.hold(1);
  const held = await submit("a green triangle on a white background", 3);
  await page.waitForFunction((sel) => /running · step 1 of 4/.test(document.querySelector(sel)?.textContent ?? ""), {}, `${job(held)} [data-testid="job-status"]`);
  // The held job runs on the server without the page: a reload frees the form and the list picks the job up again.
  await page.reload({ waitUntil: "domcontentloaded" });
  await page.waitForFunction((sel) => /running · step 1 of 4/.test(document.querySelector(sel)?.textContent ?? ""), {}, `${job(held)} [data-testid="job-status"]`);
  const queued = await submit("a blue square on a white background", 4);
  await page.waitForFunction((sel) => /queued · position 1/.test(document.querySelector(sel)?.textContent ?? ""), {}, `${job(queued)} [data-testid="job-status"]`);
  assert.match(await page.$eval("#progress-text", (e) => (e as DomEl).textContent ?? ""), /Waiting in the queue: position 1/, "the form says so too");
  assert.equal((await api<Prediction>(`/v1/predictions/${queued}`)).queue_position, 1, "the API agrees");
  assert.match(await stateOf(held), /running/);

  await page.click(`${job(queued)} ${tid("job-cancel")}`);
  await page.waitForFunction((sel) => document.querySelector(sel)?.dataset.status === "canceled", {}, job(queued));
  assert.equal(await stateOf(queued), "canceled");
  assert.equal((await api<Prediction>(`/v1/predictions/${queued}`)).status, "canceled", "the server canceled it");
  await page.waitForFunction(() => !document.querySelector('[data-testid="generate"]')!.disabled);
  assert.match(await page.$eval("#notice", (e) => (e as DomEl).textContent ?? ""), /Cancelled/);
  assert.equal(await page.$eval(`${job(queued)} ${tid("job-cancel")}`, (e) => (e as DomEl).hidden), true, "a final job has no Cancel");
  assert.equal((await api<Prediction>(`/v1/predictions/${held}`)).status, "processing", "the held job is untouched");

  await gate.release();
  await page.waitForFunction((sel) => [...document.querySelectorAll(sel)].some((img) => img.naturalWidth === 32), {}, `${job(held)} [data-testid="result-image"]`);
  assert.equal((await api<Prediction>(`/v1/predictions/${held}`)).status, "succeeded");
  assert.deepEqual(errors.take(), []);
});

test("Load more shows the next page of the server's list, older jobs last", { skip: skip ?? false, timeout: 180_000 }, async () => {
  // 100 more jobs (a page is 100), each canceled before it runs: the gate holds every step at 0 meanwhile.
  await gate.hold(0);
  const oldest = (await api<{ results: Prediction[] }>("/v1/predictions")).results.map((p) => p.id).reverse();
  for (let i = 0; i < 100; i++) {
    const res = await fetch(`${server.url}/v1/predictions`, { method: "POST", headers: { ...auth, "content-type": "application/json" }, body: JSON.stringify({ input: { prompt: "a red circle on a blue background", num_inference_steps: 4, seed: 100 + i } }) });
    const p = (await res.json()) as Prediction;
    await api(`/v1/predictions/${p.id}/cancel`, "POST");
  }
  await gate.release();
  await page.reload({ waitUntil: "domcontentloaded" });
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="job"]').length === 100 && !document.querySelector('[data-testid="load-more"]')!.hidden);
  await page.click(tid("load-more"));
  await page.waitForFunction((n) => document.querySelectorAll('[data-testid="job"]').length === n, {}, 100 + oldest.length);
  const ids = await page.$$eval(tid("job"), (els) => els.map((e) => (e as DomEl).dataset.id));
  assert.deepEqual(ids.slice(100).reverse(), oldest, "the second page holds the oldest jobs, newest first");
  assert.equal(await page.$eval(tid("load-more"), (e) => (e as DomEl).hidden), true, "no more pages");
  assert.deepEqual(errors.take(), []);
});
