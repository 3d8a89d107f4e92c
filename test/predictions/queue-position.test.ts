/**
 * Issue 23, our extensions the playground reads: `queue_position` on a prediction that waits (in the runner's
 * queue, or started but still in the engine's), null once it runs; and `stream: true` at creation makes
 * previews for a stream opened after the run started (the latest one is replayed to it).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { DiffusionEngine, OmniServer } from "../../src/index.js";
import { readSse } from "../../playground/lib/sse.js";
import { until } from "../helpers/server.js";
import { STEP_GATE, stepGate, type StepGateControl } from "../helpers/step-gate.js";

interface Prediction {
  id: string;
  status: string;
  queue_position: number | null;
  urls: { stream: string };
}

describe("predictions: queue_position and stream: true", { timeout: 180_000 }, () => {
  let engine: DiffusionEngine;
  let server: OmniServer;
  let gate: StepGateControl;
  before(async () => {
    // Request batching, one row per batch: the runner keeps 2 in the engine (1 running, 1 in its queue), the rest in its own.
    engine = await DiffusionEngine.create({ numGpus: 1, intraOpNumThreads: 1, batching: "request", limits: { maxBatchSize: 1 }, workerExtension: STEP_GATE });
    server = await OmniServer.create({ engine, port: 0, logger: false });
    await server.listen();
    gate = stepGate(engine);
  });
  after(async () => {
    await gate?.release().catch(() => {});
    await server?.close();
    await engine?.close();
  });

  const create = async (seed: number, extra: Record<string, unknown> = {}): Promise<Prediction> => {
    const res = await fetch(`${server.url}/v1/predictions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ input: { prompt: "a red circle on a blue background", num_inference_steps: 4, seed }, ...extra }),
    });
    assert.equal(res.status, 201);
    return (await res.json()) as Prediction;
  };
  const get = async (id: string) => (await (await fetch(`${server.url}/v1/predictions/${id}`)).json()) as Prediction;
  const held = async () => (await gate.status()).flatMap((s) => s.held).length;

  it("a waiting prediction has its place in line; a running or final one has none", async () => {
    await gate.hold(1);
    const a = await create(1);
    const b = await create(2);
    const c = await create(3);
    await until(async () => (await held()) === 1, "the first prediction to be held at step 1");
    const [ga, gb, gc] = await Promise.all([get(a.id), get(b.id), get(c.id)]);
    assert.deepEqual([ga.status, ga.queue_position], ["processing", null], "a runs");
    assert.deepEqual([gb.status, gb.queue_position], ["processing", 1], "b is started but waits in the engine's queue");
    assert.deepEqual([gc.status, gc.queue_position], ["starting", 2], "c waits in the runner's queue, behind b");
    const listed = (await (await fetch(`${server.url}/v1/predictions`)).json()) as { results: Prediction[] };
    assert.deepEqual(listed.results.slice(0, 3).map((p) => p.queue_position), [2, 1, null], "the list shows it too, newest first");
    await fetch(`${server.url}/v1/predictions/${b.id}/cancel`, { method: "POST" });
    await until(async () => (await get(c.id)).queue_position === 1, "c to move up once b is canceled");
    await gate.release();
    await until(async () => (await get(c.id)).status === "succeeded", "c to finish");
    assert.equal((await get(c.id)).queue_position, null);
    assert.equal((await get(b.id)).status, "canceled");
  });

  it("stream: true makes previews, and a stream opened mid-run gets the latest one first", async () => {
    await gate.hold(2);
    const d = await create(4, { stream: true });
    await until(async () => (await held()) === 1, "the prediction to be held at step 2");
    // Opened only now, after the run started: without `stream: true` no previews are made for it.
    const res = await fetch(d.urls.stream);
    const events: string[] = [];
    for await (const ev of readSse(res.body!)) {
      events.push(ev.event);
      if (ev.event === "preview") {
        assert.match(ev.data, /^data:image\/png;base64,/);
        break;
      }
    }
    assert.deepEqual(events, ["logs", "preview"], "the logs so far, then the latest preview");
    await gate.release();
    await until(async () => (await get(d.id)).status === "succeeded", "d to finish");
  });
});
