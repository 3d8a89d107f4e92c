import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import { QueueDiffusionExecutor } from "../../src/executors/queue-executor.js";
import { parseConfig } from "../../src/core/config.js";
import { ClosedError } from "../../src/errors/omni-error.js";
import { queueKeys, redisNow, subscribeWhenReady, type RpcMessage, type RpcReply } from "../../src/protocol/queue-protocol.js";
import { RpcAnswers } from "../../src/server/queue/rpc-answers.js";
import { QueueWorkerChild, TestRedis, redisMissing, uniqueQueue } from "./helpers.js";

describe("a queue worker's RPC answers (no Redis)", () => {
  it("a resend of a call is answered with the same reply, and the method runs once", async () => {
    let runs = 0;
    const answers = new RpcAnswers("w1", async (m) => ({ rank: 0, run: ++runs, method: m.method }));
    const msg: RpcMessage = { id: "c1", method: "ping", args: [], kwargs: {}, timeoutMs: 1000 };
    const first = await answers.answer(msg);
    const again = await answers.answer({ ...msg, only: ["w1"] });
    assert.equal(runs, 1);
    assert.deepEqual(again, first);
    assert.deepEqual(first, { id: "c1", worker: "w1", replies: [{ rank: 0, run: 1, method: "ping" }] });
  });

  it("a resend meant for other workers gets no answer; an error becomes the reply's error", async () => {
    const answers = new RpcAnswers("w1", async () => {
      throw new Error("boom");
    });
    assert.equal(answers.answer({ id: "c2", method: "x", args: [], kwargs: {}, timeoutMs: 1000, only: ["w2"] }), null);
    const reply = await answers.answer({ id: "c2", method: "x", args: [], kwargs: {}, timeoutMs: 1000 })!;
    assert.match(String(reply.error?.message), /boom/);
  });

  it("remembers a bounded number of calls: the oldest is forgotten first", async () => {
    let runs = 0;
    const answers = new RpcAnswers("w1", async () => ++runs, { remember: 2 });
    const m = (id: string): RpcMessage => ({ id, method: "n", args: [], kwargs: {}, timeoutMs: 1000 });
    for (const id of ["a", "b", "c"]) await answers.answer(m(id));
    await answers.answer(m("c")); // remembered
    await answers.answer(m("a")); // forgotten: runs again
    assert.equal(runs, 4);
  });
});

/**
 * A worker as the queue protocol sees it, written against Redis directly: it heartbeats, hears calls, and
 * drops the first delivery of each call (as a subscriber that was reconnecting would), or every delivery.
 */
class LossyWorker {
  readonly id = `lossy-${process.pid}`;
  readonly heard: RpcMessage[] = [];
  #conn: Redis;
  #sub: Redis;
  #keys: ReturnType<typeof queueKeys>;
  #onHeard: (() => void) | null = null;

  private constructor(url: string, queue: string, readonly answer: "second" | "never") {
    this.#conn = new Redis(url);
    this.#sub = new Redis(url);
    this.#keys = queueKeys(queue);
  }

  static async start(url: string, queue: string, answer: "second" | "never"): Promise<LossyWorker> {
    const w = new LossyWorker(url, queue, answer);
    w.#sub.on("message", (_channel: string, text: string) => void w.#hear(JSON.parse(text) as RpcMessage));
    await w.#sub.subscribe(w.#keys.rpc);
    // Live for the whole test: the heartbeat is not what this test is about.
    const now = await redisNow(w.#conn);
    await w.#conn.multi().zadd(w.#keys.workers, now + 600_000, w.id).hset(w.#keys.workerInfo, w.id, JSON.stringify({ id: w.id, pid: process.pid, ranks: 1 })).exec();
    return w;
  }

  /** Resolves once a call has been heard (a latch). */
  heardOne(): Promise<void> {
    return this.heard.length ? Promise.resolve() : new Promise((r) => (this.#onHeard = r));
  }

  async #hear(msg: RpcMessage): Promise<void> {
    if (msg.only && !msg.only.includes(this.id)) return;
    this.heard.push(msg);
    this.#onHeard?.();
    const deliveries = this.heard.filter((m) => m.id === msg.id).length;
    if (this.answer === "never" || deliveries < 2) return;
    const reply: RpcReply = { id: msg.id, worker: this.id, replies: [{ rank: 0, pid: process.pid, delivery: deliveries }] };
    await this.#conn.publish(this.#keys.rpcReply, JSON.stringify(reply));
  }

  async stop(): Promise<void> {
    await this.#conn.zrem(this.#keys.workers, this.id);
    this.#conn.disconnect();
    this.#sub.disconnect();
  }
}

const missing = redisMissing();
if (missing) console.error(`SKIPPED queue RPC resend tests: ${missing}`);

describe("queue collectiveRpc over a lossy pub/sub", { skip: missing ?? false, timeout: 300_000 }, () => {
  let redis: TestRedis;
  before(async () => {
    redis = await TestRedis.start();
  });
  after(async () => {
    await redis?.close();
  });

  const executorFor = async (queue: string) => {
    const ex = new QueueDiffusionExecutor(parseConfig({ executorClass: "queue", executorOptions: { url: redis.url, queue, rpcResendMs: 50 } }));
    await ex.init();
    return ex;
  };

  it("a call whose first delivery is lost is sent again to that worker only, and every rank answers", async () => {
    const queue = uniqueQueue("rpc-lossy");
    const real = await QueueWorkerChild.start(redis.url, queue);
    const lossy = await LossyWorker.start(redis.url, queue, "second");
    const ex = await executorFor(queue);
    try {
      // Before the resend existed, this waited out the whole deadline (300 s by default) and failed.
      const replies = (await ex.collectiveRpc("ping", { timeout: 120_000 })) as { rank: number; worker: string; delivery?: number }[];
      assert.equal(replies.length, 2);
      assert.deepEqual(replies.map((r) => r.rank), [0, 1]);
      const fromLossy = replies.find((r) => r.worker === lossy.id)!;
      assert.equal(fromLossy.delivery, 2, "the lossy worker answered the second delivery of the call");
      assert.ok(replies.some((r) => r.worker === real.id), "the real worker answered too");
      const resends = lossy.heard.slice(1);
      assert.ok(resends.length >= 1 && resends.every((m) => m.id === lossy.heard[0]!.id && m.only?.length === 1 && m.only[0] === lossy.id), `resends go to the missing worker only: ${JSON.stringify(lossy.heard)}`);
    } finally {
      await ex.close();
      await lossy.stop();
      await real.stop();
    }
  });

  it("a worker that never answers fails the call at its deadline, naming it and the subscriber counts Redis sees", async () => {
    const queue = uniqueQueue("rpc-deaf");
    const deaf = await LossyWorker.start(redis.url, queue, "never");
    const ex = await executorFor(queue);
    try {
      // The deaf worker never answers, so this deadline is what ends the call, however slow the machine.
      await assert.rejects(ex.collectiveRpc("ping", { timeout: 300 }), (err: Error) => {
        assert.match(err.message, new RegExp(`timed out after 300ms waiting for worker\\(s\\) ${deaf.id}`));
        assert.match(err.message, /Redis counts 1 subscriber\(s\) on \S+:rpc and 1 on \S+:rpc-reply/);
        return true;
      });
    } finally {
      await ex.close();
      await deaf.stop();
    }
  });

  it("a subscription asked for during the connection's handshake holds (ioredis alone loses it: the CI hang)", async () => {
    for (let i = 0; i < 5; i++) {
      const sub = new Redis(redis.url);
      const check = new Redis(redis.url);
      try {
        const channel = `handshake-${i}`;
        // "connect" fires when the socket is up and the handshake (CLIENT SETINFO, INFO) has not finished: the
        // window where ioredis 5 writes a SUBSCRIBE at once and then tears the connection down over its INFO.
        await new Promise<void>((resolve, reject) => sub.once("connect", () => subscribeWhenReady(sub, channel).then(resolve, reject)));
        const [, count] = (await check.pubsub("NUMSUB", channel)) as [string, number];
        assert.equal(Number(count), 1, `round ${i}: the subscriber is subscribed (status ${sub.status})`);
      } finally {
        sub.disconnect();
        check.disconnect();
      }
    }
  });

  it("close() fails an RPC in flight with ClosedError at once, not when its deadline passes", async () => {
    const queue = uniqueQueue("rpc-close");
    const deaf = await LossyWorker.start(redis.url, queue, "never");
    const ex = await executorFor(queue);
    try {
      const call = ex.collectiveRpc("ping", { timeout: 3_600_000 });
      const outcome = call.then(
        () => "resolved",
        (err: unknown) => err,
      );
      await deaf.heardOne();
      await ex.close();
      const err = await outcome;
      assert.ok(err instanceof ClosedError, `expected ClosedError, got ${String(err)}`);
    } finally {
      await ex.close();
      await deaf.stop();
    }
  });
});
