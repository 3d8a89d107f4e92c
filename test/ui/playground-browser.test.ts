import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { Browser, Page } from "puppeteer-core";
import { startServer, type OmniServer } from "../../src/index.js";
import { decodeB64Png, parseMetrics, until } from "../helpers/server.js";
import { ConsoleErrors, browserSkipReason, launchChromium } from "./browser.js";

// The playground end to end: a real `serve` (in-process, with an API key) and a real headless Chromium.
// One browser and one page for the whole file; the tests run in order and build on each other's state.
const skip = browserSkipReason();
const KEY = "playground-test-key";
const ARTEFACTS = mkdtempSync(join(tmpdir(), "omni-ui-artefacts-"));

/**
 * The DOM members the page-side callbacks below touch. This project compiles without lib "dom" (it is a
 * Node library), so they are declared here, for this module only; at run time the callbacks run in the page.
 */
interface DomEl {
  hidden: boolean;
  disabled: boolean;
  value: string;
  id: string;
  innerText: string;
  textContent: string | null;
  src: string;
  href: string;
  download: string;
  naturalWidth: number;
  naturalHeight: number;
  labels: { length: number } | null;
  getClientRects(): { length: number };
  getBoundingClientRect(): { left: number; right: number; width: number };
  style: { width: string };
}
declare const document: { querySelector(s: string): DomEl; querySelectorAll(s: string): { length: number }; getElementById(id: string): DomEl };
declare const localStorage: { getItem(key: string): string | null };

let server: OmniServer;
let browser: Browser;
let page: Page;
let errors: ConsoleErrors;

before(async () => {
  if (skip) return;
  server = await startServer({
    port: 0,
    apiKey: KEY,
    engineConfig: { numGpus: 1, intraOpNumThreads: 1, allowNonNativeSizes: true },
    logger: false,
  });
  browser = await launchChromium();
  page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 760 });
  errors = new ConsoleErrors(page);
});
after(async () => {
  await browser?.close();
  await server?.close();
});

const tid = (id: string) => `[data-testid="${id}"]`;
const text = (id: string) => page.$eval(tid(id), (e) => (e as DomEl).innerText);
// What a person sees: laid out (CSS could override the hidden attribute), not just attribute-free.
const isVisible = (id: string) => page.$eval(tid(id), (e) => (e as DomEl).getClientRects().length > 0);
const count = (id: string) => page.$$eval(tid(id), (els) => els.length);
const metric = async (name: string) => parseMetrics(await (await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${KEY}` } })).text()).get(name) ?? 0;

/** Replaces an input's value the way a person would (select all, type). */
async function fill(id: string, value: string): Promise<void> {
  await page.click(tid(id), { clickCount: 3 });
  await page.keyboard.press("Backspace");
  if (value) await page.type(tid(id), value);
}

/**
 * Records, from inside the page, whether `progress` was ever shown, `generate` ever disabled and
 * `preview-image` ever given a picture: the generation may finish between two looks from the test, and a fast
 * run's preview can be set and cleared within one task, so the mutation records' old values are read too.
 */
// A string, not a function: tsx's helpers (`__name`) do not exist inside the page.
const WATCH_RUN = `
  window.seen = { progress: false, disabled: false, preview: false };
  const preview = document.querySelector('[data-testid="preview-image"]');
  new MutationObserver((records) => {
    if (!document.querySelector('[data-testid="progress"]').hidden) window.seen.progress = true;
    if (document.querySelector('[data-testid="generate"]').disabled) window.seen.disabled = true;
    for (const r of records) {
      if (r.target === preview && r.attributeName === "src" && (r.oldValue ?? "").startsWith("data:image/png")) window.seen.preview = true;
      if (r.target.dataset?.testid === "progress" && r.attributeName === "hidden" && r.oldValue === null) window.seen.progress = true;
      if (r.target.dataset?.testid === "generate" && r.attributeName === "disabled" && r.oldValue !== null) window.seen.disabled = true;
    }
    if (preview.src.startsWith("data:image/png")) window.seen.preview = true;
  }).observe(document.body, { subtree: true, attributes: true, attributeOldValue: true, childList: true });
`;
async function watchRun(): Promise<void> {
  await page.evaluate(WATCH_RUN);
}
const seen = () => page.evaluate("window.seen") as Promise<Record<string, boolean>>;

test("the page loads without a key, from the server alone, and asks for the key", { skip: skip ?? false, timeout: 60_000 }, async () => {
  const requested: string[] = [];
  page.on("request", (r) => requested.push(r.url()));
  const res = await page.goto(`${server.url}/`, { waitUntil: "networkidle0" });
  assert.equal(res?.status(), 200);
  assert.ok(requested.every((u) => u.startsWith(server.url!) || u.startsWith("data:")), `only the server is asked: ${requested.join(", ")}`);
  assert.match(await page.$eval("#notice", (e) => e.textContent ?? ""), /API key/);
  for (const id of ["prompt", "negative-prompt", "steps", "seed", "size", "sampler", "api-key", "generate", "cancel", "progress", "preview-image", "gallery", "status"]) {
    assert.equal(await count(id), 1, `data-testid="${id}" is on the page`);
  }
  // Every form control has an accessible label.
  const unlabelled = await page.$$eval("input, select, textarea", (els) => els.filter((e) => !(e as DomEl).labels?.length).map((e) => e.id));
  assert.deepEqual(unlabelled, []);
  assert.equal(await isVisible("progress"), false);
  assert.deepEqual(errors.take(), [], "no console errors before any key was given");
});

test("a key typed but not saved is used: Generate works without pressing Save key", { skip: skip ?? false, timeout: 120_000 }, async () => {
  // Its own browser context: no key saved in its storage, and the other tests' page keeps its own.
  const context = await browser.createBrowserContext();
  try {
    const fresh = await context.newPage();
    const freshErrors = new ConsoleErrors(fresh);
    await fresh.setViewport({ width: 1280, height: 760 });
    await fresh.goto(`${server.url}/`, { waitUntil: "networkidle0" });
    await fresh.type(tid("api-key"), KEY);
    await fresh.click(tid("generate"));
    // Was: "Enter the API key first (leave it empty if the server has none) and press Save key."
    await fresh.waitForSelector(`${tid("result-image")}, ${tid("error")}:not([hidden])`);
    const error = await fresh.$eval(tid("error"), (e) => ((e as DomEl).hidden ? null : (e as DomEl).textContent));
    assert.equal(error, null, "no error");
    const img = await fresh.$eval(tid("result-image"), (e) => [(e as DomEl).naturalWidth, (e as DomEl).naturalHeight]);
    assert.deepEqual(img, [32, 32], "the model's native size, from the status the key unlocked");
    assert.equal(await fresh.evaluate(() => localStorage.getItem("omni-diffusion.apiKey")), KEY, "the key used is kept, as Save key would");
    assert.deepEqual(freshErrors.take(), []);
  } finally {
    await context.close();
  }
});

test("a wrong key shows a readable error", { skip: skip ?? false, timeout: 60_000 }, async () => {
  await fill("api-key", "not-the-key");
  await page.click("#save-key");
  await page.waitForSelector(`${tid("error")}:not([hidden])`);
  const message = await text("error");
  assert.match(message, /Check the API key\. Incorrect API key provided\. \(HTTP 401\)/);
  // Chromium logs each refused fetch; those 401s are the only console errors this test allows.
  const other = errors.take().filter((m) => !/Failed to load resource: the server responded with a status of 401/.test(m));
  assert.deepEqual(other, []);
});

test("with the right key the status panel shows the model, executor, workers and queue", { skip: skip ?? false, timeout: 60_000 }, async () => {
  await fill("api-key", KEY);
  await page.click("#save-key");
  await page.waitForFunction(() => /tiny-shapes/.test(document.getElementById("status-model").textContent ?? ""));
  assert.equal(await isVisible("error"), false);
  assert.equal(await page.evaluate(() => localStorage.getItem("omni-diffusion.apiKey")), KEY, "the key is kept in local storage");
  const status = await text("status");
  assert.match(status, /MultiprocExecutor · continuous batching/);
  assert.match(status, /rank-0: ready/);
  assert.match(status, /0 waiting · 0 running/);
  const samplers = await page.$$eval(`${tid("sampler")} option`, (os) => os.map((o) => (o as DomEl).value).filter(Boolean));
  assert.deepEqual(samplers, server.engine.modelLimits!.schedulers, "the sampler list is the model's");
  const sizes = await page.$$eval(`${tid("size")} option`, (os) => os.map((o) => (o as DomEl).value));
  assert.equal(sizes[0], "32x32");
  assert.ok(sizes.includes("64x64"), `non-native sizes are offered when allowed: ${sizes.join(", ")}`);
  assert.equal(await page.$eval(tid("steps"), (e) => (e as DomEl).value), "20", "the model's default steps");
});

test("at 1280 px wide the Size and Sampler selects show their longest option whole, inside the form", { skip: skip ?? false, timeout: 60_000 }, async () => {
  const vw = await page.evaluate(() => document.querySelector("html").getBoundingClientRect().width);
  assert.equal(vw, 1280);
  // A DOMRect does not cross from the page as JSON: its fields are copied.
  const form = await page.$eval("#generate-form", (e) => {
    const r = (e as DomEl).getBoundingClientRect();
    return { left: r.left, right: r.right };
  });
  for (const id of ["size", "sampler"]) {
    // The width the select asks for to show its longest option (text, padding, arrow), measured, then put back.
    const { box, wanted } = await page.$eval(tid(id), (e) => {
      const el = e as DomEl;
      const r = el.getBoundingClientRect();
      const box = { left: r.left, right: r.right, width: r.width };
      el.style.width = "max-content";
      const wanted = el.getBoundingClientRect().width;
      el.style.width = "";
      return { box, wanted };
    });
    // Was: 115 px wide for 149 px (size) and 197 px (sampler) of options, showing "32x32 (na" and "model def".
    assert.ok(box.width >= wanted - 0.5, `${id} is ${box.width} px wide but its options need ${wanted} px: the text is cut off`);
    assert.ok(box.left >= form.left - 0.5 && box.right <= form.right + 0.5, `${id} (${box.left}-${box.right}) lies inside the form (${form.left}-${form.right})`);
    assert.ok(box.right <= vw, `${id} ends inside the viewport`);
  }
});

test("Generate shows progress and a live preview, then a result image of the requested size", { skip: skip ?? false, timeout: 120_000 }, async () => {
  await page.select(tid("size"), "32x32");
  await fill("steps", "12");
  await fill("seed", "7");
  await page.select(tid("sampler"), "euler");
  await fill("prompt", "a yellow star on a black background");
  await watchRun();
  await page.click(tid("generate"));
  await page.waitForSelector(tid("result-image"));
  await page.waitForFunction(() => !document.querySelector('[data-testid="generate"]').disabled);
  assert.deepEqual(await seen(), { progress: true, disabled: true, preview: true });
  assert.equal(await isVisible("progress"), false, "progress hides when the run is over");
  const img = await page.$eval(tid("result-image"), (e) => ({ src: (e as DomEl).src, w: (e as DomEl).naturalWidth, h: (e as DomEl).naturalHeight }));
  assert.deepEqual([img.w, img.h], [32, 32]);
  const png = decodeB64Png(img.src.replace(/^data:image\/png;base64,/, ""));
  assert.deepEqual([png.width, png.height], [32, 32], "the src is the PNG itself");
  const caption = await page.$eval(`${tid("gallery")} figcaption`, (e) => e.textContent ?? "");
  assert.match(caption, /a yellow star on a black background/);
  assert.match(caption, /32x32 · 12 steps · guidance 8 · euler · seed 7/);
  const download = await page.$eval(`${tid("gallery")} a[download]`, (a) => ({ name: (a as DomEl).download, href: (a as DomEl).href }));
  assert.equal(download.name, "omni-diffusion-7-0.png");
  assert.equal(download.href, img.src);
  // The status panel reads /metrics: rows per UNet call is known once a UNet call ran.
  await page.waitForFunction(() => /\d/.test(document.getElementById("status-rows").textContent ?? ""));
  assert.deepEqual(errors.take(), []);
});

test("Images/s shows the server's speed after a generation, and keeps it while idle", { skip: skip ?? false, timeout: 60_000 }, async () => {
  // The previous test generated an image. Each status answer that arrives means the panel drew the one
  // before it (a poll starts only after the last one was drawn), so after three the panel has drawn at
  // least two polls made after the generation, the later one a whole poll interval with no new image.
  let onResponse = (_r: { url(): string }) => {};
  const threeAnswers = new Promise<void>((resolve) => {
    let answers = 0;
    onResponse = (r) => {
      if (new URL(r.url()).pathname === "/ui/api/status" && ++answers === 3) resolve();
    };
  });
  page.on("response", onResponse);
  try {
    await threeAnswers;
  } finally {
    page.off("response", onResponse);
  }
  const shown = await page.$eval("#status-rate", (e) => (e as DomEl).innerText);
  // Was: 0.00 a poll after the run (images over wall-clock time between two polls).
  assert.ok(Number(shown) > 0, `Images/s reads ${shown}`);
});

test("clicking a gallery image restores its parameters; Reuse last fills the last seed", { skip: skip ?? false, timeout: 60_000 }, async () => {
  await fill("prompt", "something else");
  await fill("steps", "3");
  await page.click("#seed-random");
  await page.select(tid("size"), "64x64");
  await page.click(tid("result-image"));
  const values = await page.evaluate(() =>
    Object.fromEntries(["prompt", "steps", "seed", "size", "sampler", "guidance", "n"].map((id) => [id, document.querySelector(`[data-testid="${id}"]`).value])),
  );
  assert.deepEqual(values, { prompt: "a yellow star on a black background", steps: "12", seed: "7", size: "32x32", sampler: "euler", guidance: "8", n: "1" });
  await page.click("#seed-random");
  assert.equal(await page.$eval(tid("seed"), (e) => (e as DomEl).value), "");
  await page.click("#seed-reuse");
  assert.equal(await page.$eval(tid("seed"), (e) => (e as DomEl).value), "7");
});

test("Ctrl+Enter generates, several images at once", { skip: skip ?? false, timeout: 60_000 }, async () => {
  await page.select(tid("size"), "32x32");
  await fill("steps", "12");
  await fill("n", "2");
  await page.click("#seed-random");
  await fill("prompt", "a blue square on a white background");
  const before = await count("result-image");
  await page.focus(tid("prompt"));
  await page.keyboard.down("Control");
  await page.keyboard.press("Enter");
  await page.keyboard.up("Control");
  await page.waitForFunction((n) => document.querySelectorAll('[data-testid="result-image"]').length === n + 2, {}, before);
  // The gallery is newest first: the first two images are this run's.
  const sizes = await page.$$eval(tid("result-image"), (els) => els.slice(0, 2).map((e) => `${(e as DomEl).naturalWidth}x${(e as DomEl).naturalHeight}`));
  assert.deepEqual(sizes, ["32x32", "32x32"]);
  await fill("n", "1");
  await page.screenshot({ path: join(ARTEFACTS, "playground.png") });
  // The README's picture: written only when asked, so a test run never dirties the work tree.
  if (process.env.UPDATE_SCREENSHOT === "1") copyFileSync(join(ARTEFACTS, "playground.png"), "docs/playground.png");
  process.stderr.write(`playground screenshot (test artefact): ${join(ARTEFACTS, "playground.png")}\n`);
  assert.deepEqual(errors.take(), []);
});

test("Cancel stops a 150-step request on the server and re-enables Generate", { skip: skip ?? false, timeout: 120_000 }, async () => {
  const abortedBefore = await metric('omni_generation_requests_total{outcome="aborted"}');
  const imagesBefore = await metric("omni_images_generated_total");
  const resultsBefore = await count("result-image");
  // A large size makes each step slow enough that the run is surely still going when Cancel lands.
  await page.select(tid("size"), "128x128");
  await fill("steps", "150");
  await page.click(tid("generate"));
  await page.waitForFunction(() => /Step \d+ of 150/.test(document.getElementById("progress-text").textContent ?? ""));
  assert.equal(await page.$eval(tid("generate"), (e) => (e as DomEl).disabled), true, "Generate is disabled while the request runs");
  assert.equal(await isVisible("progress"), true, "progress is visible while the request runs");
  await page.click(tid("cancel"));
  await page.waitForFunction(() => !document.querySelector('[data-testid="generate"]').disabled);
  assert.match(await page.$eval("#notice", (e) => e.textContent ?? ""), /Cancelled/);
  assert.equal(await isVisible("progress"), false);
  assert.equal(await isVisible("error"), false, "a cancel is not an error");
  // The server saw the disconnect and stopped the request between steps: it is no longer in flight,
  // counted as aborted, and produced no image.
  await until(() => server.inFlight === 0 && server.engine.stats.inFlight === 0, "the server to drop the cancelled request", 60_000);
  assert.equal(await metric('omni_generation_requests_total{outcome="aborted"}'), abortedBefore + 1);
  assert.equal(await metric("omni_images_generated_total"), imagesBefore);
  assert.equal(await count("result-image"), resultsBefore, "a cancelled run adds nothing to the gallery");
  assert.deepEqual(errors.take(), [], "no console errors, the aborted fetch included");
});
