/**
 * Issue 23: webhooks end to end through `serve` as users start it (a real CLI process): the built-in
 * dispatcher is wired in by default, signs with the secret the replicate client reads from
 * `/v1/webhooks/default/secret`, delivers `start` and `completed` to a real receiver, and shows the delivery on
 * the prediction; without `--allow-private-webhooks` a loopback webhook is refused at creation (the SSRF guard).
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import Replicate, { validateWebhook } from "replicate";
import { startServer, type OmniServer } from "../../src/index.js";
import { spawnServe } from "../helpers/serve-cli.js";
import { until } from "../helpers/server.js";
import { Receiver } from "./webhooks-receiver.js";

const dir = mkdtempSync(join(tmpdir(), "omni-webhooks-serve-"));

/** `serve` on a free port with the flags the tests share. */
const serve = (...flags: string[]) => spawnServe(["--port", "0", "--workers", "1", "--threads", "1", "--data-dir", join(dir, "data"), "--no-ui", "--no-a1111", ...flags]);

describe("webhooks through serve", { timeout: 300_000 }, () => {
  const children: ChildProcess[] = [];
  const closers: (() => Promise<void>)[] = [];
  after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    for (const close of closers) await close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("serve --allow-private-webhooks delivers start and completed, signed with the secret the replicate client reads", async () => {
    const receiver = await Receiver.start();
    closers.push(() => receiver.close());
    const { child, url } = await serve("--allow-private-webhooks");
    children.push(child);
    const replicate = new Replicate({ auth: "unused", baseUrl: `${url}/v1` });
    const { key } = await replicate.webhooks.default.secret.get();
    assert.match(key, /^whsec_[A-Za-z0-9+/]+=*$/);

    const created = await replicate.predictions.create({
      version: "tiny-shapes",
      input: { prompt: "a red circle on a blue background", num_inference_steps: 2, seed: 3 },
      webhook: `${receiver.url}/hook`,
      webhook_events_filter: ["start", "completed"],
    });
    await receiver.arrived(2);
    const [start, completed] = receiver.received.map((r) => ({ ...r, json: JSON.parse(r.body) as { id: string; status: string; output: string[] | null } }));
    assert.equal(start!.json.id, created.id);
    assert.equal(completed!.json.status, "succeeded");
    assert.equal(completed!.json.output?.length, 1);
    for (const r of [start!, completed!]) {
      const headers = { "webhook-id": String(r.headers["webhook-id"]), "webhook-timestamp": String(r.headers["webhook-timestamp"]), "webhook-signature": String(r.headers["webhook-signature"]) };
      assert.equal(await validateWebhook({ id: headers["webhook-id"], timestamp: headers["webhook-timestamp"], signature: headers["webhook-signature"], body: r.body, secret: key }), true);
      // …and not with another secret, so the check above can fail.
      assert.equal(await validateWebhook({ id: headers["webhook-id"], timestamp: headers["webhook-timestamp"], signature: headers["webhook-signature"], body: r.body, secret: `whsec_${Buffer.alloc(32, 1).toString("base64")}` }), false);
    }
    assert.notEqual(start!.headers["webhook-id"], completed!.headers["webhook-id"]);

    // The prediction shows both deliveries as delivered (the attempt's result is recorded after the receiver answered).
    let shown: { webhook_deliveries?: { event: string; status: string; last_status_code: number | null }[] } = {};
    await until(async () => {
      shown = (await replicate.predictions.get(created.id)) as typeof shown;
      return (shown.webhook_deliveries ?? []).filter((d) => d.status === "delivered").length === 2;
    }, "both deliveries recorded as delivered");
    assert.deepEqual(shown.webhook_deliveries!.map((d) => [d.event, d.last_status_code]), [["start", 200], ["completed", 200]]);
  });

  it("without --allow-private-webhooks a loopback webhook is a 422 naming webhook and the flag", async () => {
    const server: OmniServer = await startServer({ port: 0, logger: false, engineConfig: { numGpus: 1, intraOpNumThreads: 1 } });
    closers.push(() => server.close());
    const res = await fetch(`${server.url}/v1/predictions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ input: { prompt: "a red circle on a blue background" }, webhook: "http://127.0.0.1:9/hook" }),
    });
    assert.equal(res.status, 422);
    const body = (await res.json()) as { detail: string; status: number };
    assert.match(body.detail, /webhook: 127\.0\.0\.1, a loopback address; webhooks go to public addresses only.*--allow-private-webhooks/);
    const list = (await (await fetch(`${server.url}/v1/predictions`)).json()) as { results: unknown[] };
    assert.equal(list.results.length, 0, "a refused prediction is not created");
  });
});
