/**
 * RedisPredictionStore against a real redis-server: two store instances stand for two serve replicas.
 * Transitions happen once across them, completion sets the `--job-ttl` TTL, a stopped replica's pending
 * predictions are adopted, and a stream whose replica lost its subscription gets the outcome from the store.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import type { PredictionEvent } from "../../src/server/predictions/prediction-events.js";
import type { NewPrediction } from "../../src/server/predictions/prediction-store-api.js";
import { RedisPredictionStore } from "../../src/server/predictions/redis-prediction-store.js";
import { randomId } from "../../src/server/predictions/prediction-ids.js";
import { TestRedis, redisMissing, uniqueQueue } from "../fleet/helpers.js";

const missing = redisMissing();
if (missing) console.error(`SKIPPED RedisPredictionStore tests: ${missing}`);

const TTL_MS = 3_600_000;
const fresh = (createdAt = 1_000): NewPrediction => ({
  id: randomId(),
  token: randomId(),
  model: "omni-diffusion/tiny-shapes",
  version: "tiny-shapes",
  input: { prompt: "a red circle on a blue background", tags: [] },
  createdAt,
  deadline: null,
  webhook: null,
  webhookEventsFilter: null,
});

describe("RedisPredictionStore", { skip: missing ?? false, timeout: 120_000 }, () => {
  let redis: TestRedis;
  let admin: Redis;
  before(async () => {
    redis = await TestRedis.start();
    admin = new Redis(redis.url);
  });
  after(async () => {
    admin?.disconnect();
    await redis?.close();
  });
  const open = (queue: string) => RedisPredictionStore.open({ url: redis.url, queue, ttlMs: TTL_MS });

  it("two replicas: one history, each transition once, a cancel of a queued one cannot end a running one", async () => {
    const queue = uniqueQueue("store");
    const [a, b] = await Promise.all([open(queue), open(queue)]);
    try {
      const p = await a.insert(fresh());
      assert.deepEqual(await b.get(p.id), p, "the input round-trips (an empty array stays an array)");
      assert.deepEqual(await Promise.all([a.start(p.id, 2_000), b.start(p.id, 2_000)]).then((r) => r.sort()), [false, true]);
      assert.equal(await b.finish(p.id, "canceled", 3_000, { onlyIfQueued: true }), false, "running: not canceled as if queued");
      await a.appendLog(p.id, " 1/4\n");
      const ends = await Promise.all([a.finish(p.id, "succeeded", 4_000, { output: ["0.png"], log: "done\n" }), b.finish(p.id, "failed", 4_000, { error: "x" })]);
      assert.deepEqual(ends.sort(), [false, true]);
      const rec = (await b.get(p.id))!;
      assert.ok(rec.status === "succeeded" || rec.status === "failed");
      assert.equal(rec.runs, 1);
      assert.match(rec.logs, /^ 1\/4\n/);
      assert.equal(await a.pendingCount(), 0);
      const ttl = await admin.pttl(`omni-diffusion:${queue}:predictions:p:${p.id}`);
      assert.ok(ttl > 0 && ttl <= TTL_MS, `TTL ${ttl}`);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it("pages newest first across replicas; retention deletes what completed before the cutoff, with its images", async () => {
    const queue = uniqueQueue("page");
    const [a, b] = await Promise.all([open(queue), open(queue)]);
    try {
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) ids.push((await (i % 2 ? b : a).insert(fresh(i))).id);
      const first = await b.page(2, null);
      assert.deepEqual(first.results.map((r) => r.id), [ids[4], ids[3]]);
      const rest = await a.page(10, first.nextBefore);
      assert.deepEqual(rest.results.map((r) => r.id), [ids[2], ids[1], ids[0]]);
      assert.equal(rest.nextBefore, null);
      await a.files.write(ids[0]!, "0.png", Buffer.from("png bytes"));
      await a.finish(ids[0]!, "succeeded", 5_000, { output: ["0.png"] });
      assert.deepEqual(await b.files.read(ids[0]!, "0.png"), Buffer.from("png bytes"));
      assert.deepEqual(await b.deleteCompletedBefore(4_999), []);
      assert.deepEqual(await b.deleteCompletedBefore(5_000), [ids[0]]);
      assert.equal(await a.get(ids[0]!), null);
      assert.equal(await a.files.read(ids[0]!, "0.png"), null);
      assert.deepEqual((await a.page(10, null)).results.map((r) => r.id), [ids[4], ids[3], ids[2], ids[1]]);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it("a replica that stops leaves its pending predictions to the next one: a running one goes back to the queue, said in its logs", async () => {
    const queue = uniqueQueue("adopt");
    const a = await open(queue);
    const queued = await a.insert(fresh(1));
    const running = await a.insert(fresh(2));
    assert.equal(await a.start(running.id, 3), true);
    const other = await open(queue); // alive: what it holds is not taken
    const held = await other.insert(fresh(3));
    await a.close();
    const b = await open(queue);
    try {
      assert.deepEqual((await b.requeueInterrupted("restarted\n")).map((r) => r.id), [running.id]);
      assert.deepEqual((await b.queued()).map((r) => r.id), [queued.id, running.id]);
      const rec = (await b.get(running.id))!;
      assert.equal(rec.status, "starting");
      assert.equal(rec.logs, "restarted\n");
      assert.deepEqual((await other.queued()).map((r) => r.id), [held.id]);
    } finally {
      await Promise.all([b.close(), other.close()]);
    }
  });

  it("with Redis gone, a transition fails at once and close() ends (a serve's shutdown never waits on Redis)", async () => {
    const gone = await TestRedis.start();
    const store = await RedisPredictionStore.open({ url: gone.url, queue: uniqueQueue("gone"), ttlMs: TTL_MS });
    const p = await store.insert(fresh());
    await gone.close();
    await assert.rejects(Promise.resolve(store.requeue(p.id, "x")));
    await store.close();
  });

  it("a stream on a replica whose subscription dropped gets the outcome from the store once it reconnects", async () => {
    const queue = uniqueQueue("events");
    const [a, b] = await Promise.all([open(queue), open(queue)]);
    try {
      const p = await a.insert(fresh());
      const seen: PredictionEvent[] = [];
      let ended!: () => void;
      const done = new Promise<void>((resolve) => (ended = resolve));
      b.events.subscribe(p.id, (e) => {
        seen.push(e);
        if (e.type === "done") ended();
      });
      a.events.emit(p.id, { type: "logs", text: " 1/2\n" });
      // The outcome is stored without its event (as if the message were lost), then B's subscriber is cut off.
      await a.finish(p.id, "succeeded", 9, { output: ["0.png"] });
      await admin.client("KILL", "TYPE", "pubsub");
      await done;
      assert.deepEqual(seen.at(-2), { type: "output", names: ["0.png"] });
      assert.deepEqual(seen.at(-1), { type: "done", status: "succeeded", error: null });
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });
});
