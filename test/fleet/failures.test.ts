import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { Job, Queue } from "bullmq";
import { DiffusionEngine } from "../../src/engine/engine.js";
import { OmniDiffusionRequest } from "../../src/core/request.js";
import { AbortedError, OmniError } from "../../src/errors/omni-error.js";
import { QueueWorkerChild, TestRedis, redisMissing, uniqueQueue } from "./helpers.js";

const missing = redisMissing();
if (missing) console.error(`SKIPPED fleet failure tests: ${missing}`);

/** A request long enough to be caught mid-job (64x64, the most steps the default limits allow). */
const long = (seed: number) => new OmniDiffusionRequest({ prompt: "a green square on a white background", width: 64, height: 64, numInferenceSteps: 150, seed });
const short = (seed: number) => new OmniDiffusionRequest({ prompt: "a red circle on a blue background", width: 32, height: 32, numInferenceSteps: 4, seed });

/** Resolves at the first progress of `requestId` (a latch, not a sleep). */
function firstStep(): { onProgress: () => void; reached: Promise<void> } {
  let hit!: () => void;
  const reached = new Promise<void>((r) => (hit = r));
  return { onProgress: () => hit(), reached };
}

/** Polls `check` until it stops throwing; a hang guard, never a timing assertion. */
async function eventually(check: () => Promise<void>): Promise<void> {
  for (;;) {
    try {
      return await check();
    } catch {
      await delay(100);
    }
  }
}

describe("queue executor: failures", { skip: missing ?? false, timeout: 600_000 }, () => {
  let redis: TestRedis;
  before(async () => {
    redis = await TestRedis.start();
  });
  after(async () => {
    await redis?.close();
  });

  it("an abort reaches the worker holding the job and stops it between steps", { timeout: 300_000 }, async () => {
    const queue = uniqueQueue("abort");
    const worker = await QueueWorkerChild.start(redis.url, queue);
    const engine = await DiffusionEngine.create({ executorClass: "queue", executorOptions: { url: redis.url, queue }, allowNonNativeSizes: true });
    const inspect = new Queue(queue, { connection: { host: "127.0.0.1", port: redis.port } });
    try {
      const r = long(1);
      const latch = firstStep();
      let lastStep = 0;
      const result = engine.generate(r, { onProgress: (p) => ((lastStep = p.step), latch.onProgress()) });
      await latch.reached;
      // Watched before the abort: the AbortedError can settle `result` before abort() itself resolves.
      const rejected = assert.rejects(result, AbortedError);
      assert.equal(await engine.abort(r.requestId), true);
      await rejected;
      assert.ok(lastStep < 150, `stopped before the last step (at ${lastStep})`);
      // The worker itself ended the job with an AbortedError (the executor did not merely stop waiting).
      await eventually(async () => assert.ok((await Job.fromId(inspect, r.requestId))?.finishedOn));
      const stored = (await Job.fromId(inspect, r.requestId))!.returnvalue as { errors: Record<string, { name: string }> };
      assert.equal(stored.errors[r.requestId]?.name, "AbortedError");
      // The worker is free again.
      const ok = await engine.generate(short(2));
      assert.equal(ok.images.length, 1);
    } finally {
      await engine.close();
      await inspect.close();
      await worker.stop();
    }
  });

  it("Redis stopped: in-flight and new requests fail with a clear error; after a restart the engine serves again", { timeout: 300_000 }, async () => {
    const queue = uniqueQueue("redis-down");
    const worker = await QueueWorkerChild.start(redis.url, queue);
    const engine = await DiffusionEngine.create({ executorClass: "queue", executorOptions: { url: redis.url, queue, healthTimeoutMs: 2_000 }, allowNonNativeSizes: true });
    try {
      assert.equal((await engine.generate(short(3))).images.length, 1);
      const latch = firstStep();
      const inFlight = engine.generate(long(4), { onProgress: latch.onProgress }).then(
        () => null,
        (err: unknown) => err,
      );
      await latch.reached;
      await redis.stop();
      const lost = await inFlight;
      assert.ok(lost instanceof OmniError, `an OmniError, got ${String(lost)}`);
      assert.equal(lost.code, "OMNI_ERR_TRANSPORT");
      assert.match(lost.message, /Redis/);
      assert.equal(lost.retryable, true);
      const refused = await engine.generate(short(5)).then(() => null, (err: unknown) => err);
      assert.ok(refused instanceof OmniError && refused.code === "OMNI_ERR_TRANSPORT", `new requests fail at once: ${String(refused)}`);
      assert.match(refused.message, new RegExp(`127\\.0\\.0\\.1:${redis.port}`));
      await assert.rejects(engine.checkHealth({ timeout: 2_000 }), (err: unknown) => err instanceof OmniError && /OMNI_ERR_(UNHEALTHY|TIMEOUT)/.test(err.code));

      await redis.startAgain();
      // The executor and the worker reconnect by themselves; the worker's heartbeat makes it live again.
      await eventually(() => engine.checkHealth({ timeout: 2_000 }));
      const again = await engine.generate(short(6));
      assert.equal(again.images.length, 1);
      assert.equal(worker.running, true, "the worker survived the outage");
    } finally {
      await engine.close();
      await worker.stop();
    }
  });

  it("SIGTERM drains: the worker stops pulling, finishes the jobs it holds and exits 0; the rest wait for another worker", { timeout: 300_000 }, async () => {
    const queue = uniqueQueue("drain");
    const first = await QueueWorkerChild.start(redis.url, queue, ["--concurrency", "1"]);
    const engine = await DiffusionEngine.create({ executorClass: "queue", executorOptions: { url: redis.url, queue }, allowNonNativeSizes: true });
    let second: QueueWorkerChild | undefined;
    try {
      const held = new OmniDiffusionRequest({ prompt: "a blue triangle on a yellow background", width: 64, height: 64, numInferenceSteps: 40, seed: 7 });
      const latch = firstStep();
      const heldResult = engine.generate(held, { onProgress: latch.onProgress });
      await latch.reached;
      const waiting = [short(8), short(9)].map((r) => ({ r, out: engine.generate(r) }));
      const exit = await first.stop("SIGTERM");
      assert.deepEqual(exit, { code: 0, signal: null }, `exited cleanly; stderr: ${first.stderr}`);
      const done = await heldResult;
      assert.equal(done.images.length, 1, "the held job finished before the worker exited");
      second = await QueueWorkerChild.start(redis.url, queue);
      for (const w of waiting) assert.equal((await w.out).images.length, 1, `${w.r.requestId} ran on the next worker`);
    } finally {
      await engine.close();
      await Promise.all([first.stop(), second?.stop()]);
    }
  });

  it("SIGTERM past --drain-timeout hands the held job back: another worker runs it and the caller gets it once", { timeout: 300_000 }, async () => {
    const queue = uniqueQueue("handback");
    const first = await QueueWorkerChild.start(redis.url, queue, ["--concurrency", "1", "--drain-timeout", "0"]);
    const engine = await DiffusionEngine.create({ executorClass: "queue", executorOptions: { url: redis.url, queue }, allowNonNativeSizes: true });
    let second: QueueWorkerChild | undefined;
    try {
      const r = long(10);
      const latch = firstStep();
      const result = engine.generate(r, { onProgress: latch.onProgress });
      await latch.reached;
      const exit = await first.stop("SIGTERM");
      assert.deepEqual(exit, { code: 0, signal: null }, `exited cleanly; stderr: ${first.stderr}`);
      second = await QueueWorkerChild.start(redis.url, queue);
      const out = await result;
      assert.equal(out.error, null);
      assert.equal(out.images.length, 1, "the handed-back job ran on the next worker");
    } finally {
      await engine.close();
      await Promise.all([first.stop(), second?.stop()]);
    }
  });
});
