import { after, before, describe, it } from "node:test";
import { runExecutorConformance } from "../../src/testing/executor-conformance.js";
import { QueueWorkerChild, TestRedis, redisMissing, uniqueQueue } from "./helpers.js";

// The conformance suite, unchanged, on the queue executor with two real workers pulling from a real Redis.
const missing = redisMissing();
if (missing) {
  console.error(`SKIPPED queue executor conformance: ${missing}`);
  describe("executor conformance: queue", () => it("needs redis-server", (t) => t.skip(missing)));
} else {
  let redis: TestRedis;
  const workers: QueueWorkerChild[] = [];
  const queue = uniqueQueue("conformance");
  before(async () => {
    redis = await TestRedis.start();
    workers.push(...(await Promise.all([QueueWorkerChild.start(redis.url, queue), QueueWorkerChild.start(redis.url, queue)])));
  });
  after(async () => {
    await Promise.all(workers.map((w) => w.stop()));
    await redis?.close();
  });
  // rpcTimeoutMs under the suite's 120 s per test: a worker that never answers fails as a TimeoutError naming it.
  runExecutorConformance("queue", () => ({ executorClass: "queue", executorOptions: { url: redis.url, queue }, allowNonNativeSizes: true, rpcTimeoutMs: 60_000 }), { expectedRanks: 2 });
}
