import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Job, Queue, QueueEvents } from "bullmq";
import { DiffusionEngine } from "../../src/engine/engine.js";
import { OmniDiffusionRequest } from "../../src/core/request.js";
import { QueueWorkerChild, TestRedis, redisMissing, uniqueQueue } from "./helpers.js";

const missing = redisMissing();
if (missing) console.error(`SKIPPED fleet delivery tests: ${missing}`);

describe("queue executor: nothing lost, nothing twice", { skip: missing ?? false, timeout: 600_000 }, () => {
  let redis: TestRedis;
  before(async () => {
    redis = await TestRedis.start();
  });
  after(async () => {
    await redis?.close();
  });

  it("SIGKILL of one of two workers with 40 requests in flight: 40 images, each request completed once", { timeout: 600_000 }, async () => {
    const queue = uniqueQueue("sigkill");
    const workers = await Promise.all([QueueWorkerChild.start(redis.url, queue), QueueWorkerChild.start(redis.url, queue)]);
    const inspect = new Queue(queue, { connection: { host: "127.0.0.1", port: redis.port } });
    const events = new QueueEvents(queue, { connection: { host: "127.0.0.1", port: redis.port } });
    await events.waitUntilReady();
    const completions = new Map<string, number>();
    events.on("completed", ({ jobId }) => completions.set(jobId, (completions.get(jobId) ?? 0) + 1));
    const engine = await DiffusionEngine.create({ executorClass: "queue", executorOptions: { url: redis.url, queue }, allowNonNativeSizes: true });
    try {
      const [victim, survivor] = workers as [QueueWorkerChild, QueueWorkerChild];
      // Latch: the victim holds a job that has made progress (it is mid-job when killed).
      let heldByVictim: string | null = null;
      let killed!: () => void;
      const victimMidJob = new Promise<void>((resolve) => (killed = resolve));
      events.on("progress", ({ jobId, data }) => {
        if (heldByVictim || (data as { worker?: string }).worker !== victim.id) return;
        heldByVictim = jobId;
        victim.child.kill("SIGKILL");
        killed();
      });
      const requests = Array.from({ length: 40 }, (_, i) => new OmniDiffusionRequest({ prompt: `a red circle on a blue background`, width: 32, height: 32, numInferenceSteps: 8, seed: i }));
      const results = Promise.all(requests.map((r) => engine.generate(r)));
      await victimMidJob;
      await victim.exited;
      const outs = await results;
      assert.equal(outs.length, 40);
      const ids = new Set(outs.map((o) => o.requestId));
      assert.equal(ids.size, 40, "40 distinct requests answered");
      for (const [i, o] of outs.entries()) {
        assert.equal(o.error, null, `request ${i}: ${o.error?.message}`);
        assert.equal(o.images.length, 1, `request ${i} has exactly one image`);
        assert.equal(o.requestId, requests[i]!.requestId);
      }
      // The job the victim held mid-job was handed to the survivor and completed.
      const redelivered = await Job.fromId(inspect, heldByVictim!);
      assert.ok(redelivered?.finishedOn, "the killed worker's job finished");
      assert.equal(survivor.running, true);
      // Every job completed exactly once on the queue (a lost lock can never complete a job a second time).
      await waitFor(() => completions.size === 40);
      for (const r of requests) assert.equal(completions.get(r.requestId), 1, `job ${r.requestId} completed once`);
    } finally {
      await engine.close();
      await events.close();
      await inspect.close();
      await Promise.all(workers.map((w) => w.stop()));
    }
  });
});

/** Waits for a condition fed by events already received (hang guard only: the test's own timeout). */
async function waitFor(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 20));
}
