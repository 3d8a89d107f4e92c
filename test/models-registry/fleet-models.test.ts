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
import { NotFoundError } from "../../src/errors/omni-error.js";
import type { QueueDiffusionExecutor } from "../../src/executors/queue-executor.js";
import { QueueWorkerChild, TestRedis, redisMissing, uniqueQueue } from "../fleet/helpers.js";

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
});
