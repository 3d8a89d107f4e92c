/**
 * Issue 23, the queue-executor variant: two real `serve` replicas on the `queue` executor share one Redis (a
 * real redis-server) and one queue worker, and so share one history of predictions. The official `replicate`
 * client talks to each with its own `baseUrl`. The worker's steps are gated (test/fixtures/workers/step-gate.ts,
 * driven over the queue's collective RPC) where a prediction must stay running or queued: no sleeps.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import Replicate from "replicate";
import { DiffusionEngine } from "../../src/engine/engine.js";
import { startQueueWorker, type QueueWorker } from "../../src/server/queue/queue-worker.js";
import { TestRedis, redisMissing, uniqueQueue } from "../fleet/helpers.js";
import { spawnServe } from "../helpers/serve-cli.js";
import { until } from "../helpers/server.js";
import { STEP_GATE, stepGate, type StepGateControl } from "../helpers/step-gate.js";
import { Receiver } from "./webhooks-receiver.js";

const missing = redisMissing();
if (missing) console.error(`SKIPPED predictions on Redis with two serve replicas: ${missing}`);

const MODEL = "omni-diffusion/tiny-shapes";
const input = (seed: number, steps = 3) => ({ prompt: "a red circle on a blue background", num_inference_steps: steps, seed });

type Prediction = { id: string; status: string; output: string[] | null; logs: string; started_at: string | null; urls: { get: string; cancel: string; stream: string } };

interface Replica {
  child: ChildProcess;
  url: string;
  client: Replicate;
}

describe("predictions on Redis: two serve replicas on the queue executor share one history", { skip: missing ?? false, timeout: 600_000 }, () => {
  let redis: TestRedis;
  let worker: QueueWorker;
  let control: DiffusionEngine;
  let gate: StepGateControl;
  const queue = uniqueQueue("predis");
  const dirs: string[] = [];
  const replicas: Replica[] = [];

  const startReplica = async (): Promise<Replica> => {
    const dir = mkdtempSync(join(tmpdir(), "omni-predis-"));
    dirs.push(dir);
    // --max-batch 1 on one engine slot: a replica keeps 2 predictions in the queue executor, a third waits in the store.
    const { child, url } = await spawnServe([
      "--port", "0", "--executor", "queue", "--executor-options", JSON.stringify({ url: redis.url, queue }),
      "--workers", "1", "--max-batch", "1", "--data-dir", dir, "--no-ui", "--no-a1111", "--allow-private-webhooks",
    ]);
    const r = { child, url, client: new Replicate({ auth: "unused", baseUrl: `${url}/v1` }) };
    replicas.push(r);
    return r;
  };
  const stop = async (r: Replica) => {
    if (r.child.exitCode !== null || r.child.signalCode !== null) return;
    const exited = once(r.child, "exit");
    r.child.kill("SIGTERM");
    await exited;
  };
  const get = async (r: Replica, id: string) => (await r.client.predictions.get(id)) as unknown as Prediction;
  const create = async (r: Replica, seed: number) => (await r.client.predictions.create({ model: MODEL, input: input(seed) })) as unknown as Prediction;
  /** Its logs on `r` show its first step done: the gate holds it there. */
  const heldAtStep1 = (r: Replica, id: string) => until(async () => / 1\/\d+/.test((await get(r, id)).logs), `${id} at step 1`, 120_000);
  let a: Replica;
  let b: Replica;

  before(async () => {
    redis = await TestRedis.start();
    // One job at a time: a second job waits in the queue while the first is held.
    worker = await startQueueWorker({ url: redis.url, queueName: queue, concurrency: 1, heartbeatMs: 500, engine: { numGpus: 1, intraOpNumThreads: 1, workerExtension: STEP_GATE } });
    control = await DiffusionEngine.create({ executorClass: "queue", executorOptions: { url: redis.url, queue } });
    gate = stepGate(control);
    [a, b] = await Promise.all([startReplica(), startReplica()]);
  });
  after(async () => {
    await gate?.release().catch(() => undefined);
    for (const r of replicas) await stop(r);
    await control?.close();
    await worker?.close();
    await redis?.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it("created on A: got, listed and waited on B, and its image served by B (the same bytes as A's)", async () => {
    const created = await create(a, 1);
    assert.equal(created.urls.get, `${a.url}/v1/predictions/${created.id}`);
    const done = (await b.client.wait(created as never, { interval: 20 })) as unknown as Prediction;
    assert.equal(done.status, "succeeded", done.logs);
    assert.equal(done.output!.length, 1);
    assert.ok(done.output![0]!.startsWith(`${b.url}/v1/predictions/${created.id}/files/`), done.output![0]);
    const fromB = Buffer.from(await (await fetch(done.output![0]!)).arrayBuffer());
    const fromA = Buffer.from(await (await fetch((await get(a, created.id)).output![0]!)).arrayBuffer());
    assert.deepEqual(fromB.subarray(1, 4).toString(), "PNG");
    assert.deepEqual(fromB, fromA);
    const listed = (await b.client.predictions.list()).results.map((p) => p.id);
    assert.ok(listed.includes(created.id), `B lists ${created.id}`);
    assert.equal((await get(b, created.id)).logs, (await get(a, created.id)).logs);
  });

  it("a prediction A runs streams from B: step lines, the output URL, then done", async () => {
    await gate.hold(1);
    const p = await create(a, 2);
    await heldAtStep1(b, p.id);
    const stream = await fetch((await get(b, p.id)).urls.stream); // subscribed on B once the headers are here
    assert.equal(stream.headers.get("content-type"), "text/event-stream; charset=utf-8");
    await gate.release();
    const text = await stream.text();
    assert.match(text, /event: logs\ndata: .*\| 3\/3/, text);
    assert.match(text, new RegExp(`event: output\\ndata: ${b.url}/v1/predictions/${p.id}/files/`), text);
    assert.match(text, /event: done\ndata: \{\}\n\n$/, text);
  });

  it("cancel through B: a queued prediction is removed, a running one stops at its next step", async () => {
    await gate.hold(1);
    const running = await create(a, 3);
    await heldAtStep1(a, running.id);
    const inQueue = await create(a, 4); // in the queue executor: waiting for the held worker
    const inStore = await create(a, 5); // A's two slots are taken: still starting, in the store
    assert.equal((await get(b, inStore.id)).status, "starting");

    const c1 = (await b.client.predictions.cancel(inStore.id)) as unknown as Prediction;
    assert.equal(c1.status, "canceled", "a prediction queued in the store ends at once, whichever replica cancels it");
    assert.equal(c1.started_at, null);

    await b.client.predictions.cancel(inQueue.id);
    await b.client.predictions.cancel(running.id);
    const [q, r] = await Promise.all([inQueue, running].map((p) => b.client.wait(p as never, { interval: 20 }) as unknown as Promise<Prediction>));
    assert.equal(q!.status, "canceled", q!.logs);
    assert.doesNotMatch(q!.logs, / \d+\/3/, "the queued job never ran a step");
    assert.equal(r!.status, "canceled", r!.logs);
    assert.match(r!.logs, /Canceled while running/);
    assert.doesNotMatch(r!.logs, / 3\/3/, "stopped before its last step");
    await gate.release();
    assert.equal((await get(a, inStore.id)).status, "canceled", "A never started what B canceled");
  });

  it("webhooks: each event is sent once for the fleet, by the replica that moves the prediction", async () => {
    const rx = await Receiver.start();
    try {
      const hooked = (r: Replica, seed: number) =>
        r.client.predictions.create({ model: MODEL, input: input(seed), webhook: `${rx.url}/hook`, webhook_events_filter: ["start", "completed"] }) as unknown as Promise<Prediction>;
      await gate.hold(1);
      const ran = await hooked(a, 8);
      await heldAtStep1(a, ran.id);
      const filler = await create(a, 9); // takes A's second slot, so the next one stays in the store
      const canceled = await hooked(a, 10);
      assert.equal(((await b.client.predictions.cancel(canceled.id)) as unknown as Prediction).status, "canceled");
      await gate.release();
      await rx.arrived(3); // A: start and completed of `ran`; B: completed of `canceled`
      assert.equal(((await a.client.wait(filler as never, { interval: 20 })) as unknown as Prediction).status, "succeeded");
      const seen = rx.bodies().map((x) => `${String(x.id)} ${String(x.status)}`);
      assert.deepEqual(seen.filter((x) => x.startsWith(canceled.id)), [`${canceled.id} canceled`]);
      assert.deepEqual(seen.filter((x) => x.startsWith(ran.id)), [`${ran.id} processing`, `${ran.id} succeeded`]);
      assert.equal(new Set(rx.received.map((r) => r.headers["webhook-id"])).size, 3);
      const fromB = ((await get(b, canceled.id)) as unknown as { webhook_deliveries: { event: string; status: string }[] }).webhook_deliveries;
      assert.deepEqual(fromB.map((d) => [d.event, d.status]), [["completed", "delivered"]], "the replica that delivered shows it");
    } finally {
      await gate.release();
      await rx.close();
    }
  });

  it("a restarted replica still has the history", async () => {
    const before = (await a.client.predictions.list()).results.map((p) => [p.id, p.status]);
    assert.equal(before.length, 8, JSON.stringify(before));
    await stop(b);
    b = await startReplica();
    const after = (await b.client.predictions.list()).results.map((p) => [p.id, p.status]);
    assert.deepEqual(after, before);
    const done = await create(b, 6);
    assert.equal(((await a.client.wait(done as never, { interval: 20 })) as unknown as Prediction).status, "succeeded");
  });

  it("a replica killed mid-run: another takes its prediction over once its lease runs out, and it succeeds once", async () => {
    const c = await startReplica();
    await gate.hold(1);
    const p = await create(c, 7);
    await heldAtStep1(a, p.id);
    const exited = once(c.child, "exit");
    c.child.kill("SIGKILL");
    await exited;
    // The lease (15 s) runs out on Redis's clock; A looks every 7.5 s: a latch on the prediction's own record.
    await until(async () => /restarted while this prediction was running/.test((await get(a, p.id)).logs), `A took ${p.id} over`, 120_000);
    await gate.release();
    const done = (await a.client.wait(p as never, { interval: 20 })) as unknown as Prediction;
    assert.equal(done.status, "succeeded", done.logs);
    assert.equal(done.logs.match(/Generated 1 image/g)?.length, 1, done.logs);
    assert.ok(done.output![0]!.startsWith(a.url), done.output![0]);
    assert.equal((await fetch(done.output![0]!)).headers.get("content-type"), "image/png");
  });
});
