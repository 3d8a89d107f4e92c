/**
 * The queue fleet routes a model's jobs only to workers that serve it (issue 24): real redis-server, real
 * `omni-diffusion worker --queue` processes, one serving only tiny-shapes, one serving tiny-shapes and the sd15
 * fixture. Each model has its own BullMQ queue; a worker pulls the queues of the models it declares.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { DiffusionEngine } from "../../src/engine/engine.js";
import { OmniDiffusionRequest } from "../../src/core/request.js";
import { AbortedError, NotFoundError, QueueFullError } from "../../src/errors/omni-error.js";
import type { QueueDiffusionExecutor } from "../../src/executors/queue-executor.js";
import { DEFAULT_MODEL_DIR } from "../../src/core/paths.js";
import { modelQueueName } from "../../src/protocol/queue-protocol.js";
import { startQueueWorker } from "../../src/server/queue/queue-worker.js";
import { QueueWorkerChild, TestRedis, redisMissing, uniqueQueue } from "../fleet/helpers.js";
import { STEP_GATE, stepGate } from "../helpers/step-gate.js";

const SD15 = fileURLToPath(new URL("../fixtures/models/sd15", import.meta.url));
const missing = redisMissing();
if (missing) console.error(`SKIPPED fleet model-routing tests: ${missing}`);

describe("queue fleet: a model's jobs reach only workers that serve it", { skip: missing ?? false, timeout: 600_000 }, () => {
  let redis: TestRedis;
  before(async () => {
    redis = await TestRedis.start();
  });
  after(async () => {
    await redis?.close();
  });

  it("sd15 jobs all run on the worker that declares sd15; tiny jobs run anywhere; an unserved model is NotFoundError", async () => {
    const queue = uniqueQueue("models");
    const [tinyOnly, both] = await Promise.all([QueueWorkerChild.start(redis.url, queue), QueueWorkerChild.start(redis.url, queue, ["--model", "tiny-shapes", "--model", SD15])]);
    const engine = await DiffusionEngine.create({ executorClass: "queue", executorOptions: { url: redis.url, queue }, allowNonNativeSizes: true });
    try {
      const infos = await (engine.executor as QueueDiffusionExecutor).liveWorkers();
      assert.deepEqual(infos.find((w) => w.id === both.id)?.models, ["tiny-shapes", "sd15"]);
      assert.deepEqual(infos.find((w) => w.id === tinyOnly.id)?.models, ["tiny-shapes"]);
      const req = (i: number, model?: string) => new OmniDiffusionRequest({ prompt: "a red circle on a blue background", seed: i, numInferenceSteps: 2, ...(model ? { model } : {}) });
      // The tiny-only worker has no sd15: had one of these jobs reached it, that request would fail with NotFoundError.
      const outs = await Promise.all([...Array.from({ length: 6 }, (_, i) => engine.generate(req(i, "sd15"))), ...Array.from({ length: 4 }, (_, i) => engine.generate(req(i)))]);
      for (const o of outs) assert.equal(o.images.length, 1);
      const stats = (await engine.collectiveRpc("getStats")) as { models: { loaded: { model: string }[] } }[];
      const withSd = stats.filter((s) => s.models.loaded.some((e) => e.model === "sd15"));
      assert.equal(withSd.length, 1, "only one worker ever loaded sd15");
      await assert.rejects(engine.generate(req(1, "sdxl")), (e: unknown) => e instanceof NotFoundError && /no live worker .* serves model "sdxl"/.test(e.message));
    } finally {
      await engine.close();
      await Promise.all([tinyOnly.stop(), both.stop()]);
    }
  });

  it("a job waiting on its model's queue counts toward maxWaiting; aborting its request removes that job and ends the request at once", async () => {
    const queue = uniqueQueue("model-abort");
    // One job at a time, the running one held at a gate: the second job of the model's queue surely waits.
    const worker = await startQueueWorker({ url: redis.url, queueName: queue, concurrency: 1, engine: { executorClass: "uniproc", intraOpNumThreads: 1, models: { "tiny-b": DEFAULT_MODEL_DIR }, workerExtension: STEP_GATE } });
    // maxWaiting 1: the one job waiting on the model's queue fills it.
    const engine = await DiffusionEngine.create({ executorClass: "queue", executorOptions: { url: redis.url, queue, maxWaiting: 1 } });
    const { Queue } = await import("bullmq");
    const modelQueue = new Queue(modelQueueName(queue, "tiny-b"), { connection: { host: "127.0.0.1", port: redis.port } });
    const gate = stepGate(engine);
    try {
      const req = (seed: number) => new OmniDiffusionRequest({ prompt: "a red circle on a blue background", seed, numInferenceSteps: 4, model: "tiny-b" });
      const running = req(1);
      const queued = req(2);
      await gate.hold(1, running.requestId);
      let atGate!: () => void;
      const reached = new Promise<void>((r) => (atGate = r));
      const first = engine.generate(running, { onProgress: (p) => p.step >= 1 && atGate() });
      await reached;
      const second = engine.generate(queued);
      const rejected = assert.rejects(second, (e: unknown) => e instanceof AbortedError);
      // The job is on the model's queue, waiting (the worker's one slot is held by the gated request).
      for (;;) {
        const job = await modelQueue.getJob(queued.requestId);
        if (job && (await job.isWaiting())) break;
        await new Promise((r) => setImmediate(r));
      }
      // Jobs waiting on a model's queue count toward maxWaiting (only the base queue's were counted).
      await assert.rejects(engine.generate(req(3)), (e: unknown) => e instanceof QueueFullError && /1 jobs waiting, maxWaiting 1/.test(e.message));
      assert.equal(await engine.abort(queued.requestId), true);
      await rejected;
      assert.equal(await modelQueue.getJob(queued.requestId), undefined, "the waiting job was removed from the model's queue");
      await gate.release();
      assert.equal((await first).images.length, 1);
    } finally {
      await gate.release().catch(() => undefined);
      await engine.close();
      await modelQueue.close();
      await worker.close();
    }
  });
});
