/**
 * Retries on a manual clock (no real waiting): a receiver answering 500 twice then 200 gets the delivery on
 * the third attempt with the same webhook-id, each attempt logged and visible through `deliveries(id)`; a
 * 3xx is a failed attempt whose Location is never fetched; retries stop once the window has passed; and the
 * default schedule keeps trying for at least an hour.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import Database from "better-sqlite3";
import { Webhook } from "standardwebhooks";
import { SqliteWebhookDispatcher, type WebhookDispatcherOptions } from "../../src/server/predictions/webhooks/sqlite-webhook-dispatcher.js";
import { DEFAULT_BACKOFF, nextDelay } from "../../src/server/predictions/webhooks/webhook-backoff.js";
import { ManualClock } from "../helpers/manual-clock.js";
import { attemptOf, LogLatch, Receiver } from "./webhooks-receiver.js";

const ALL = { eventsFilter: null } as const;

function dispatcher(extra: Partial<WebhookDispatcherOptions> = {}) {
  const clock = new ManualClock(Date.now());
  const logs = new LogLatch();
  const d = new SqliteWebhookDispatcher({ db: new Database(":memory:"), allowPrivate: true, clock, logger: logs.logger, backoff: { random: () => 0 }, ...extra });
  /** Moves the clock to when the delivery of `id` is next due. */
  const advanceToNext = (id: string) => {
    const next = d.deliveries(id)[0]!.nextAttemptAt;
    assert.ok(next, "a next attempt is scheduled");
    clock.advance(Date.parse(next) - clock.now());
  };
  return { d, clock, logs, advanceToNext };
}

describe("webhooks: retries", { timeout: 60_000 }, () => {
  it("500, 500, then 200: delivered on the third attempt with the same webhook-id, every attempt logged", async () => {
    const receiver = await Receiver.start((n) => (n < 2 ? 500 : 200));
    const { d, clock, logs, advanceToNext } = dispatcher();
    try {
      const t0 = clock.now();
      d.notify("p1", "completed", { id: "p1", status: "succeeded" }, { url: `${receiver.url}/hook`, ...ALL });
      await logs.line(attemptOf("p1", 1));
      assert.deepEqual(d.deliveries("p1").map((s) => [s.status, s.attempts, s.lastStatusCode, s.lastError, s.nextAttemptAt]), [
        ["pending", 1, 500, "HTTP 500", new Date(t0 + 1_000).toISOString()],
      ]);
      advanceToNext("p1");
      await logs.line(attemptOf("p1", 2));
      assert.equal(d.deliveries("p1")[0]!.nextAttemptAt, new Date(t0 + 1_000 + 2_000).toISOString(), "the delay doubled");
      advanceToNext("p1");
      const third = await logs.line(attemptOf("p1", 3));
      assert.equal(third.msg, "webhook delivered");
      assert.deepEqual(d.deliveries("p1").map((s) => [s.status, s.attempts, s.lastStatusCode, s.lastError, s.nextAttemptAt]), [["delivered", 3, 200, null, null]]);
      assert.equal(receiver.received.length, 3);
      const ids = new Set(receiver.received.map((r) => r.headers["webhook-id"]));
      assert.equal(ids.size, 1, "one webhook-id across the retries");
      assert.equal([...ids][0], d.deliveries("p1")[0]!.webhookId);
      // Each attempt is signed afresh, with its own timestamp, and verifies.
      for (const r of receiver.received) new Webhook(d.secret).verify(r.body, r.headers as Record<string, string>);
      assert.deepEqual(receiver.received.map((r) => Number(r.headers["webhook-timestamp"])), [t0, t0 + 1_000, t0 + 3_000].map((t) => Math.floor(t / 1000)));
      assert.deepEqual(logs.msg("webhook attempt failed; will retry").map((l) => [l.attempt, l.statusCode, l.url]), [
        [1, 500, `${receiver.url}/hook`],
        [2, 500, `${receiver.url}/hook`],
      ]);
    } finally {
      await d.close();
      await receiver.close();
    }
  });

  it("a redirect is a failed attempt: the Location is never requested", async () => {
    const elsewhere = await Receiver.start();
    const receiver = await Receiver.start(() => ({ redirect: `${elsewhere.url}/stolen` }));
    const { d, logs } = dispatcher();
    try {
      d.notify("p1", "start", { id: "p1", status: "processing" }, { url: receiver.url, ...ALL });
      await logs.line(attemptOf("p1", 1));
      const [s] = d.deliveries("p1");
      assert.equal(s!.status, "pending");
      assert.equal(s!.lastStatusCode, 302);
      assert.match(s!.lastError!, /redirects are not followed/);
      assert.equal(elsewhere.received.length, 0);
    } finally {
      await d.close();
      await receiver.close();
      await elsewhere.close();
    }
  });

  it("retries stop once the window has passed: the delivery is failed and says why", async () => {
    const receiver = await Receiver.start(() => 503);
    const { d, logs, advanceToNext } = dispatcher({ backoff: { random: () => 0, windowMs: 3_000 } });
    try {
      d.notify("p1", "completed", { id: "p1" }, { url: receiver.url, ...ALL });
      await logs.line(attemptOf("p1", 1));
      advanceToNext("p1"); // t0 + 1 s
      await logs.line(attemptOf("p1", 2));
      advanceToNext("p1"); // t0 + 3 s: the window has passed after this one
      const last = await logs.line(attemptOf("p1", 3));
      assert.equal(last.msg, "webhook failed; retries exhausted");
      assert.deepEqual(d.deliveries("p1").map((s) => [s.status, s.attempts, s.lastStatusCode, s.nextAttemptAt]), [["failed", 3, 503, null]]);
    } finally {
      await d.close();
      await receiver.close();
    }
  });

  it("the default schedule retries for at least an hour, each delay at most 10 min plus jitter", () => {
    for (const random of [() => 0, () => 0.999999]) {
      const o = { ...DEFAULT_BACKOFF, random };
      let elapsed = 0;
      let attempts = 1;
      const delays: number[] = [];
      for (let delay = nextDelay(attempts, elapsed, o); delay !== null; delay = nextDelay(++attempts, elapsed, o)) {
        delays.push(delay);
        elapsed += delay;
      }
      assert.ok(elapsed >= 3_600_000, `last attempt at ${elapsed} ms`);
      assert.ok(delays.every((x) => x >= 1_000 && x <= 750_000), String(delays));
      assert.deepEqual(delays.slice(0, 3).map((x) => Math.round(x / (1 + 0.25 * random()))), [1_000, 2_000, 4_000]);
      assert.ok(attempts < 30, `${attempts} attempts`);
    }
  });
});
