/**
 * Issue 23: the predictions API's side of the webhook seam (src/server/predictions/webhook-types.ts). A small
 * recording dispatcher stands in for delivery (built in src/server/predictions/webhooks/): it records what the
 * jobs tell it, so these tests check when and with what `notify` is called, that `checkUrl` guards creation,
 * and that the prediction shows the deliveries the dispatcher reports.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { ValidationError } from "../../src/errors/omni-error.js";
import { startServer, type OmniServer } from "../../src/index.js";
import type { WebhookDeliveryState, WebhookDispatcher, WebhookEvent, WebhookTarget } from "../../src/server/predictions/webhook-types.js";
import { ManualClock } from "../helpers/manual-clock.js";
import { STEP_GATE, stepGate, type StepGateControl } from "../helpers/step-gate.js";
import { until } from "../helpers/server.js";

interface Call {
  id: string;
  event: WebhookEvent;
  body: Record<string, unknown>;
  target: WebhookTarget;
}

class RecordingDispatcher implements WebhookDispatcher {
  readonly calls: Call[] = [];
  readonly secret = "whsec_dGVzdA==";
  notify(id: string, event: WebhookEvent, body: Record<string, unknown>, target: WebhookTarget): void {
    this.calls.push({ id, event, body: structuredClone(body), target });
  }
  deliveries(id: string): WebhookDeliveryState[] {
    return this.calls
      .filter((c) => c.id === id)
      .map((c, i) => ({ webhookId: `msg_${i}`, event: c.event, status: "delivered", attempts: 1, lastStatusCode: 200, lastError: null, nextAttemptAt: null }));
  }
  async checkUrl(url: string): Promise<void> {
    if (new URL(url).hostname === "refused.example") throw new ValidationError("webhook: refused.example resolves to a private address", { field: "webhook" });
  }
  async close(): Promise<void> {}
}

describe("predictions call the webhook dispatcher", { timeout: 120_000 }, () => {
  let server: OmniServer;
  let gate: StepGateControl;
  const hooks = new RecordingDispatcher();
  const post = async (body: unknown, headers: Record<string, string> = {}) => {
    const res = await fetch(`${server.url}/v1/predictions`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> & { id: string; status: string } };
  };
  before(async () => {
    server = await startServer({ port: 0, logger: false, webhooks: hooks, clock: new ManualClock(), engineConfig: { numGpus: 1, intraOpNumThreads: 1, workerExtension: STEP_GATE, limits: { maxBatchSize: 1 } } });
    gate = stepGate(server.engine);
  });
  after(async () => {
    await gate?.release();
    await server?.close();
  });

  it("start, one logs per step, output, completed: each with the prediction as it was then and the client's target", async () => {
    const { status, json } = await post({ input: { prompt: "a blue star on a yellow background", num_inference_steps: 3, seed: 5 }, webhook: "https://hooks.example/done", webhook_events_filter: ["start", "completed"] }, { prefer: "wait" });
    assert.equal(status, 201);
    assert.equal(json.status, "succeeded");
    const calls = hooks.calls.filter((c) => c.id === json.id);
    assert.deepEqual(calls.map((c) => c.event), ["start", "logs", "logs", "logs", "output", "completed"]);
    for (const c of calls) assert.deepEqual(c.target, { url: "https://hooks.example/done", eventsFilter: ["start", "completed"] });
    assert.equal(calls[0]!.body.status, "processing");
    assert.match(String(calls[3]!.body.logs), / 3\/3/);
    assert.equal(calls.at(-1)!.body.status, "succeeded");
    assert.deepEqual(calls.at(-1)!.body.output, json.output);
    // The dispatcher's view of the deliveries is on the prediction.
    const got = (await (await fetch(`${server.url}/v1/predictions/${json.id}`)).json()) as { webhook_deliveries: { event: string; status: string }[]; webhook_events_filter: string[] };
    assert.deepEqual(got.webhook_deliveries.map((d) => d.event), calls.map((c) => c.event));
    assert.deepEqual(got.webhook_events_filter, ["start", "completed"]);
  });

  it("a prediction canceled while queued gets only `completed`; one without a webhook gets nothing", async () => {
    await gate.hold(0);
    try {
      const a = await post({ input: { prompt: "a red circle on a blue background", num_inference_steps: 3 } });
      const b = await post({ input: { prompt: "a red circle on a blue background", num_inference_steps: 3 } });
      const queued = await post({ input: { prompt: "a red circle on a blue background", num_inference_steps: 3 }, webhook: "https://hooks.example/q" });
      assert.equal(queued.json.status, "starting");
      await fetch(`${server.url}/v1/predictions/${queued.json.id}/cancel`, { method: "POST" });
      const calls = hooks.calls.filter((c) => c.id === queued.json.id);
      assert.deepEqual(calls.map((c) => c.event), ["completed"]);
      assert.equal(calls[0]!.body.status, "canceled");
      assert.equal(calls[0]!.target.eventsFilter, null);
      for (const p of [a, b]) await fetch(`${server.url}/v1/predictions/${p.json.id}/cancel`, { method: "POST" });
      await until(async () => ((await (await fetch(`${server.url}/v1/predictions/${a.json.id}`)).json()) as { status: string }).status === "canceled", "a canceled");
      assert.deepEqual(hooks.calls.filter((c) => c.id === a.json.id || c.id === b.json.id), []);
    } finally {
      await gate.release();
    }
  });

  it("checkUrl refuses a webhook at creation: 422 naming webhook, nothing stored", async () => {
    const before = hooks.calls.length;
    const { status, json } = await post({ input: { prompt: "a red circle on a blue background" }, webhook: "https://refused.example/x" });
    assert.equal(status, 422);
    assert.deepEqual((json as unknown as { invalid_fields: { field: string }[] }).invalid_fields.map((f) => f.field), ["webhook"]);
    const bad = await post({ input: { prompt: "a red circle on a blue background" }, webhook: "https://hooks.example/x", webhook_events_filter: ["finished"] });
    assert.equal(bad.status, 422);
    assert.equal(hooks.calls.length, before);
    const list = (await (await fetch(`${server.url}/v1/predictions`)).json()) as { results: { webhook?: string }[] };
    assert.ok(!list.results.some((p) => p.webhook?.includes("refused")));
  });
});
