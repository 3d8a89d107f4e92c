/**
 * A receiver that never answers holds a bounded number of slots (per origin) and does not delay deliveries to
 * other receivers: checked with latches on a manual clock, so the hanging attempts never time out on their
 * own. The attempt deadline is the clock's too; `close()` stops in-flight attempts without counting them.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import Database from "better-sqlite3";
import { SqliteWebhookDispatcher } from "../../src/server/predictions/webhooks/sqlite-webhook-dispatcher.js";
import { ManualClock } from "../helpers/manual-clock.js";
import { attemptOf, LogLatch, Receiver } from "./webhooks-receiver.js";

const ALL = { eventsFilter: null } as const;

describe("webhooks: concurrency and deadlines", { timeout: 60_000 }, () => {
  it("a receiver that never answers does not delay another prediction's delivery", async () => {
    const silent = await Receiver.start(() => "hang");
    const healthy = await Receiver.start();
    const clock = new ManualClock(Date.now());
    const logs = new LogLatch();
    const d = new SqliteWebhookDispatcher({ db: new Database(":memory:"), allowPrivate: true, clock, logger: logs.logger, maxPerOrigin: 2 });
    try {
      for (const id of ["a1", "a2", "a3"]) d.notify(id, "start", { id }, { url: silent.url, ...ALL });
      await silent.arrived(2); // two attempts hang there, the third waits for a slot of that origin
      d.notify("b1", "completed", { id: "b1" }, { url: healthy.url, ...ALL });
      const delivered = await logs.line(attemptOf("b1", 1));
      assert.equal(delivered.msg, "webhook delivered");
      assert.equal(healthy.received.length, 1);
      assert.equal(silent.received.length, 2, "no more than maxPerOrigin attempts to the silent origin");
      assert.deepEqual(["a1", "a2", "a3"].map((id) => d.deliveries(id)[0]!.attempts), [0, 0, 0], "the hanging ones are still in their first attempt");
    } finally {
      await d.close();
      await silent.close();
      await healthy.close();
    }
  });

  it("an attempt past its deadline fails and is retried; close() stops one in flight without counting it", async () => {
    const silent = await Receiver.start(() => "hang");
    const clock = new ManualClock(Date.now());
    const logs = new LogLatch();
    const d = new SqliteWebhookDispatcher({ db: new Database(":memory:"), allowPrivate: true, clock, logger: logs.logger, attemptTimeoutMs: 10_000, backoff: { random: () => 0 } });
    try {
      d.notify("p1", "completed", { id: "p1" }, { url: silent.url, ...ALL });
      await silent.arrived(1);
      clock.advance(9_999);
      await new Promise((r) => setImmediate(r)); // lets an attempt that (wrongly) ended record itself
      assert.equal(d.deliveries("p1")[0]!.attempts, 0, "not yet past the deadline");
      clock.advance(1);
      const failed = await logs.line(attemptOf("p1", 1));
      assert.equal(failed.error, "timed out after 10000 ms");
      assert.equal(d.deliveries("p1")[0]!.status, "pending");
      clock.advance(1_000);
      await silent.arrived(2); // the retry, hanging too
      await d.close();
      const [s] = d.deliveries("p1");
      assert.deepEqual([s!.status, s!.attempts], ["pending", 1], "the attempt stopped by close() is not counted");
    } finally {
      await d.close();
      await silent.close();
    }
  });
});
