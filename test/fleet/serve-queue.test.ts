import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { startServer, type OmniServer } from "../../src/server/omni-server.js";
import { QUEUE_METRICS } from "../../src/protocol/queue-protocol.js";
import { until } from "../helpers/server.js";
import { QueueWorkerChild, TestRedis, redisMissing, uniqueQueue } from "./helpers.js";

const missing = redisMissing();
if (missing) console.error(`SKIPPED fleet serve tests: ${missing}`);

/** A metric's value for a label set, from Prometheus text. */
function metric(text: string, name: string, labels: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${name}{`) && labels.split(",").every((kv) => l.includes(kv)));
  return line ? Number(line.split(" ").pop()) : undefined;
}

describe("serve on the queue executor", { skip: missing ?? false, timeout: 600_000 }, () => {
  let redis: TestRedis;
  let worker: QueueWorkerChild;
  let server: OmniServer;
  const queue = uniqueQueue("serve");
  before(async () => {
    redis = await TestRedis.start();
    worker = await QueueWorkerChild.start(redis.url, queue, ["--concurrency", "1", "--metrics-port", "0"]);
    server = await startServer({
      port: 0,
      host: "127.0.0.1",
      logger: false,
      engineConfig: { executorClass: "queue", executorOptions: { url: redis.url, queue, maxWaiting: 1 }, allowNonNativeSizes: true },
    });
  });
  after(async () => {
    await server?.close({ timeoutMs: 10_000 });
    await worker?.stop();
    await redis?.close();
  });

  it("serves an image through the queue and exports the queue's gauges on /metrics", async () => {
    const res = await fetch(`${server.url}/v1/images/generations`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: "a red circle on a blue background", size: "32x32", response_format: "b64_json", num_inference_steps: 4 }),
    });
    assert.equal(res.status, 200, await res.clone().text());
    const text = await (await fetch(`${server.url}/metrics`)).text();
    const q = `queue="${queue}"`;
    assert.equal(metric(text, QUEUE_METRICS.liveWorkers, q), 1);
    assert.equal(metric(text, QUEUE_METRICS.up, q), 1);
    assert.equal(metric(text, QUEUE_METRICS.jobs, `${q},state="waiting"`), 0);
    assert.equal(metric(text, QUEUE_METRICS.jobs, `${q},state="completed"`), 1);
    assert.equal(metric(text, QUEUE_METRICS.oldestWaiting, q), 0);
  });

  it("the worker's own /metrics and /health answer", async () => {
    const m = /metrics=(\S+)/.exec(worker.readyLine)?.[1];
    assert.ok(m, worker.readyLine);
    assert.equal((await fetch(`${m}/health`)).status, 200);
    const text = await (await fetch(`${m}/metrics`)).text();
    assert.match(text, /omni_queue_enqueue_to_start_seconds_count 1/);
    assert.equal(metric(text, QUEUE_METRICS.liveWorkers, `queue="${queue}"`), 1);
  });

  it("a full queue (maxWaiting) answers 429 with Retry-After", async () => {
    const body = (steps: number) => JSON.stringify({ prompt: "a green square on a white background", size: "64x64", response_format: "b64_json", num_inference_steps: steps });
    const post = (steps: number) => fetch(`${server.url}/v1/images/generations`, { method: "POST", headers: { "content-type": "application/json" }, body: body(steps) });
    // The worker takes one job at a time: the first runs, the second waits (maxWaiting 1), then a third is refused.
    const running = post(150);
    const waitingBody = post(150);
    const q = `queue="${queue}"`;
    await until(async () => {
      const text = await (await fetch(`${server.url}/metrics`)).text();
      return metric(text, QUEUE_METRICS.jobs, `${q},state="waiting"`) === 1 && metric(text, QUEUE_METRICS.jobs, `${q},state="active"`) === 1;
    }, "one job running and one waiting", 120_000);
    const refused = await post(2);
    assert.equal(refused.status, 429, await refused.clone().text());
        assert.ok(refused.headers.get("retry-after"));
    const err = (await refused.json()) as { error: { code: string; message: string } };
    assert.match(err.error.message, /maxWaiting 1/);
    assert.equal((await running).status, 200);
    assert.equal((await waitingBody).status, 200);
  });
});
