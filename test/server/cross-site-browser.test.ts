/**
 * Issue 21 item 3, attacked for real: headless Chromium opens a page served from another loopback port (and
 * from `localhost`, another site than 127.0.0.1), and that page POSTs a multipart edit, a text/plain A1111
 * txt2img and a form to a keyless `serve`, as a malicious site would. Nothing may reach the engine. A
 * control run against a server that allows the page's origin (`corsOrigins`) shows the same page does
 * reach it, so the check can fail. A rebound name (`evil.example` resolved to 127.0.0.1) gets a 403.
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { once } from "node:events";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import puppeteer, { type Browser } from "puppeteer-core";
import { OmniServer, startServer, type ServerOptions } from "../../src/index.js";
import { GatedExecutor } from "../fixtures/server/gated-executor.js";
import { recordRequests, testPng } from "../fixtures/clients/edit-images.js";
import { until } from "../helpers/server.js";
import { browserSkipReason, findChromium } from "../ui/browser.js";
import { tempDir } from "../helpers/temp-dir.js";

const skip = browserSkipReason();

/** The attacker's page: three kinds of request a browser sends to another origin without a preflight. */
function attackPage(target: string): string {
  const png = testPng().toString("base64");
  return `<!doctype html><meta charset="utf-8"><title>cute cats</title>
<iframe name="sink" style="display:none"></iframe>
<form id="f" method="POST" action="${target}/sdapi/v1/interrupt" target="sink" enctype="text/plain"><input name='{"x":"' value='"}'></form>
<script>
(async () => {
  const bytes = Uint8Array.from(atob("${png}"), (c) => c.charCodeAt(0));
  const form = new FormData();
  form.append("prompt", "a red circle on a blue background");
  form.append("num_inference_steps", "1");
  form.append("image", new Blob([bytes], { type: "image/png" }), "a.png");
  const results = [];
  for (const req of [
    fetch("${target}/v1/images/edits", { method: "POST", mode: "no-cors", body: form }),
    fetch("${target}/sdapi/v1/txt2img", { method: "POST", mode: "no-cors", headers: { "content-type": "text/plain" }, body: JSON.stringify({ prompt: "a red circle", steps: 1 }) }),
  ]) results.push(await req.then(() => "sent", (e) => "failed: " + e));
  const sink = document.querySelector("iframe");
  const loaded = new Promise((r) => sink.addEventListener("load", r, { once: true }));
  document.getElementById("f").submit();
  await loaded;
  document.title = "done " + results.join(",");
})();
</script>`;
}

describe("a page on another origin attacks a keyless serve from a real browser (issue 21 item 3)", { skip: skip ?? false }, () => {
  let browser: Browser;
  let pages: Server;
  let pagePort = 0;
  let target = "";
  before(async () => {
    browser = await puppeteer.launch({
      executablePath: findChromium()!,
      headless: true,
      userDataDir: tempDir("omni-attack-profile-"),
      args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--host-resolver-rules=MAP evil.example 127.0.0.1"],
    });
    pages = createServer((_req, res) => res.writeHead(200, { "content-type": "text/html" }).end(attackPage(target)));
    pages.listen(0, "127.0.0.1");
    await once(pages, "listening");
    pagePort = (pages.address() as { port: number }).port;
  });
  after(async () => {
    await browser?.close();
    pages?.close();
  });

  /** Serves the attack page from `pageOrigin` against a fresh server; returns the requests its engine got and its 403s. */
  async function attack(pageOrigin: string, extra: Partial<ServerOptions> = {}): Promise<{ reached: number; refused: number; title: string }> {
    const server: OmniServer = await startServer({ port: 0, logger: false, defaultMetrics: false, engineConfig: { executorClass: GatedExecutor }, ...extra });
    const rec = recordRequests(server.engine);
    try {
      target = server.url!;
      const page = await browser.newPage();
      try {
        await page.goto(`${pageOrigin}/`);
        // Refused requests answer at once and the page finishes; an admitted one waits at the gate instead.
        if (extra.corsOrigins) await until(() => rec.seen.length > 0, "a request to reach the engine");
        else await Promise.race([page.waitForFunction('document.title.startsWith("done")', { timeout: 30_000 }), until(() => rec.seen.length > 0, "a request to reach the engine")]);
        const title = await page.title();
        const metrics = await (await fetch(`${server.url}/metrics`)).text();
        const refused = [...metrics.matchAll(/^omni_http_requests_total\{[^}]*status_code="403"[^}]*\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
        return { reached: rec.seen.length, refused, title };
      } finally {
        await page.close();
      }
    } finally {
      rec.restore();
      (server.engine.executor as GatedExecutor).release();
      await server.close({ timeoutMs: 1_000 });
    }
  }

  test("a page on another port of 127.0.0.1 (same-site) reaches nothing: 3 POSTs, 3 refusals", async () => {
    const r = await attack(`http://127.0.0.1:${pagePort}`);
    assert.deepEqual([r.reached, r.refused], [0, 3], "[requests the engine got, 403s]");
    assert.match(r.title, /^done sent,sent/, "the browser did send them");
  });

  test("a page on localhost (another site than 127.0.0.1) reaches nothing", async () => {
    const r = await attack(`http://localhost:${pagePort}`);
    assert.deepEqual([r.reached, r.refused], [0, 3]);
  });

  test("control: the same page does reach a server that allows its origin (the check can fail)", async () => {
    const r = await attack(`http://127.0.0.1:${pagePort}`, { corsOrigins: [`http://127.0.0.1:${pagePort}`] });
    assert.ok(r.reached >= 1, `the page's requests reached the engine (${r.reached})`);
  });

  test("a rebound name: the page at http://evil.example:<serve port>/ (resolving to 127.0.0.1) is refused", async () => {
    const server = await startServer({ port: 0, logger: false, defaultMetrics: false, engineConfig: { executorClass: GatedExecutor } });
    const page = await browser.newPage();
    try {
      const res = await page.goto(`http://evil.example:${new URL(server.url!).port}/`);
      assert.equal(res?.status(), 403);
      assert.match(await page.content(), /host_not_allowed/);
    } finally {
      await page.close();
      await server.close();
    }
  });
});
