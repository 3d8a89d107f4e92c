import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseConfig } from "../../src/core/config.js";
import { OmniError, TransportError } from "../../src/errors/omni-error.js";
import { QueueDiffusionExecutor } from "../../src/executors/queue-executor.js";
import { freePort } from "./helpers.js";

// Needs no redis-server: it is about there being none.
describe("queue executor without a reachable Redis", () => {
  it("init fails with a TimeoutError naming the Redis URL, workerStartTimeoutMs and the refusal, and close releases everything", { timeout: 60_000 }, async () => {
    const port = await freePort();
    const executor = new QueueDiffusionExecutor(parseConfig({ executorClass: "queue", executorOptions: { url: `redis://127.0.0.1:${port}/0` }, workerStartTimeoutMs: 1_000 }));
    await assert.rejects(executor.init(), (err: unknown) => {
      assert.ok(err instanceof OmniError, String(err));
      assert.equal(err.code, "OMNI_ERR_TIMEOUT");
      assert.match(err.message, new RegExp(`redis://127\\.0\\.0\\.1:${port}/0`));
      assert.match(err.message, /workerStartTimeoutMs/);
      // The cause, not only "did not answer".
      assert.match(err.message, new RegExp(`connection refused at 127\\.0\\.0\\.1:${port}`));
      return true;
    });
    // Returns although Redis never answered (the test runner would report a hang otherwise).
    await executor.close();
  });

  it("a refused Redis port fails init within refusedTimeoutMs (default 5 s) naming the refusal, not after workerStartTimeoutMs (60 s)", { timeout: 30_000 }, async () => {
    const port = await freePort();
    // workerStartTimeoutMs stays at its 60 s default, twice the test's hang guard: only the refusal can end init in time.
    const executor = new QueueDiffusionExecutor(parseConfig({ executorClass: "queue", executorOptions: { url: `redis://127.0.0.1:${port}/0` } }));
    try {
      await assert.rejects(executor.init(), (err: unknown) => {
        assert.ok(err instanceof TransportError, `TransportError, got ${String(err)}`);
        assert.equal(err.data.unreachable, true);
        assert.equal(err.data.errno, "ECONNREFUSED");
        assert.equal(err.message, `Redis at redis://127.0.0.1:${port}/0: connection refused at 127.0.0.1:${port} (connect ECONNREFUSED 127.0.0.1:${port}); is redis-server running there?`);
        return true;
      });
    } finally {
      await executor.close();
    }
  });

  it("bad executorOptions are refused before anything connects", () => {
    for (const [options, field] of [
      [{}, "executorOptions.url"],
      [{ url: "http://127.0.0.1:6379" }, "executorOptions.url"],
      [{ url: "redis://127.0.0.1:6379/x" }, "executorOptions.url"],
      [{ url: "redis://127.0.0.1:6379/0", queue: "a:b" }, "executorOptions.queue"],
      [{ url: "redis://127.0.0.1:6379/0", maxWaitng: 3 }, "executorOptions."],
      [{ url: "redis://127.0.0.1:6379/0", refusedTimeoutMs: -1 }, "executorOptions.refusedTimeoutMs"],
    ] as const) {
      assert.throws(() => new QueueDiffusionExecutor(parseConfig({ executorClass: "queue", executorOptions: options })), (err: unknown) => {
        assert.ok(err instanceof OmniError && err.code === "OMNI_ERR_CONFIG", String(err));
        assert.ok(String(err.data.field).startsWith(field), `${JSON.stringify(options)}: field ${String(err.data.field)}`);
        return true;
      });
    }
  });
});
