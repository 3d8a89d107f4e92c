/**
 * Durability: deliveries live in the SQLite file. A dispatcher notifies against a receiver that is down, is
 * closed, and a new one on the same file delivers once the receiver is up, with the same webhook-id; a
 * delivery never attempted before the restart goes out too, and a delivered one is not sent again.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import Database from "better-sqlite3";
import { Webhook } from "standardwebhooks";
import { SqliteWebhookDispatcher } from "../../src/server/predictions/webhooks/sqlite-webhook-dispatcher.js";
import { ManualClock } from "../helpers/manual-clock.js";
import { attemptOf, LogLatch, Receiver } from "./webhooks-receiver.js";

const dir = mkdtempSync(join(tmpdir(), "omni-hooks-durable-"));
after(() => rmSync(dir, { recursive: true, force: true }));

describe("webhooks: durable across a restart", { timeout: 60_000 }, () => {
  it("pending deliveries resume on a new dispatcher over the same file, with the same webhook-id", async () => {
    const file = join(dir, "jobs.db");
    // A port with nothing listening: the receiver is down.
    const probe = await Receiver.start();
    const port = Number(new URL(probe.url).port);
    await probe.close();
    const up = await Receiver.start();
    const url = `http://127.0.0.1:${port}/hook`;

    const db1 = new Database(file);
    const clock1 = new ManualClock(Date.now());
    const logs1 = new LogLatch();
    const first = new SqliteWebhookDispatcher({ db: db1, allowPrivate: true, clock: clock1, logger: logs1.logger });
    const secret = first.secret;
    first.notify("p1", "start", { id: "p1", status: "processing" }, { url, eventsFilter: null });
    first.notify("done", "completed", { id: "done" }, { url: up.url, eventsFilter: null });
    const failed = await logs1.line(attemptOf("p1", 1));
    await logs1.line(attemptOf("done", 1));
    assert.equal(failed.msg, "webhook attempt failed; will retry");
    assert.equal(failed.error, "ECONNREFUSED");
    first.notify("p1", "completed", { id: "p1", status: "succeeded" }, { url, eventsFilter: null });
    await logs1.line(attemptOf("p1", 1), 2); // its first attempt failed too
    const before = first.deliveries("p1");
    await first.close();
    db1.close();
    assert.deepEqual(before.map((s) => [s.event, s.status]), [["start", "pending"], ["completed", "pending"]]);

    const receiver = await Receiver.start(() => 200, port);
    const db2 = new Database(file);
    const logs2 = new LogLatch();
    const second = new SqliteWebhookDispatcher({ db: db2, allowPrivate: true, clock: new ManualClock(Date.now() + 60_000), logger: logs2.logger });
    try {
      assert.equal(second.secret, secret, "the secret survived too");
      await receiver.arrived(2);
      await logs2.line((l) => l.msg === "webhook delivered", 2);
      const after = second.deliveries("p1");
      assert.deepEqual(after.map((s) => [s.webhookId, s.event, s.status]), before.map((s) => [s.webhookId, s.event, "delivered"]));
      assert.deepEqual(after.map((s) => s.attempts), [2, 2]);
      assert.deepEqual(receiver.received.map((r) => r.headers["webhook-id"]).sort(), before.map((s) => s.webhookId).sort());
      assert.equal(receiver.received.find((r) => r.headers["webhook-id"] === before[0]!.webhookId)!.headers["webhook-id"], failed.webhookId);
      for (const r of receiver.received) new Webhook(secret).verify(r.body, r.headers as Record<string, string>);
      assert.equal(up.received.length, 1, "the delivery completed before the restart is not sent again");
      assert.deepEqual(second.deliveries("done").map((s) => s.status), ["delivered"]);
    } finally {
      await second.close();
      db2.close();
      await receiver.close();
      await up.close();
    }
  });
});
