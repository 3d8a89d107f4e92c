/**
 * Which events go out: `output`/`logs` at most one per 500 ms per prediction, coalesced to the latest body
 * (on a manual clock); `start` and `completed` never throttled; a pending throttled event is superseded by
 * `completed`; `webhook_events_filter` honoured; one attempt at a time per prediction, so `start` arrives
 * before `completed`.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import Database from "better-sqlite3";
import { SqliteWebhookDispatcher } from "../../src/server/predictions/webhooks/sqlite-webhook-dispatcher.js";
import { ManualClock } from "../helpers/manual-clock.js";
import { LogLatch, Receiver } from "./webhooks-receiver.js";

function setup() {
  const clock = new ManualClock(Date.now());
  const logs = new LogLatch();
  const d = new SqliteWebhookDispatcher({ db: new Database(":memory:"), allowPrivate: true, clock, logger: logs.logger });
  const delivered = (n: number) => logs.line((l) => l.msg === "webhook delivered", n);
  return { d, clock, logs, delivered };
}

const events = (r: Receiver) => r.bodies().map((b) => `${String(b.event)}:${String(b.v)}`);

describe("webhooks: events, throttle and filter", { timeout: 60_000 }, () => {
  it("output and logs: at most one per 500 ms per prediction, carrying the latest body; start and completed always", async () => {
    const receiver = await Receiver.start();
    const { d, clock, delivered } = setup();
    const target = { url: receiver.url, eventsFilter: null };
    try {
      const t0 = clock.now();
      d.notify("p1", "start", { event: "start", v: 0 }, target);
      d.notify("p1", "output", { event: "output", v: 1 }, target); // waits behind start, then is coalesced
      d.notify("p1", "output", { event: "output", v: 2 }, target);
      d.notify("p1", "logs", { event: "logs", v: 3 }, target);
      await delivered(2);
      assert.deepEqual(events(receiver), ["start:0", "logs:3"]);
      d.notify("p1", "output", { event: "output", v: 4 }, target);
      d.notify("p1", "output", { event: "output", v: 5 }, target);
      const waiting = d.deliveries("p1").filter((s) => s.status === "pending");
      assert.deepEqual(
        waiting.map((s) => [s.event, s.attempts, s.nextAttemptAt]),
        [["output", 0, new Date(t0 + 500).toISOString()]],
        "one pending output, due 500 ms after the last one",
      );
      clock.advance(499);
      await new Promise((r) => setImmediate(r));
      assert.equal(receiver.received.length, 2, "nothing before the window ends");
      clock.advance(1);
      await delivered(3);
      d.notify("p1", "completed", { event: "completed", v: 6 }, target); // never throttled
      await delivered(4);
      assert.deepEqual(events(receiver), ["start:0", "logs:3", "output:5", "completed:6"]);
      assert.deepEqual(d.deliveries("p1").map((s) => [s.event, s.status]), [
        ["start", "delivered"],
        ["logs", "delivered"],
        ["output", "delivered"],
        ["completed", "delivered"],
      ]);
    } finally {
      await d.close();
      await receiver.close();
    }
  });

  it("completed supersedes an output still waiting for its window", async () => {
    const receiver = await Receiver.start();
    const { d, delivered } = setup();
    const target = { url: receiver.url, eventsFilter: null };
    try {
      d.notify("p1", "output", { event: "output", v: 1 }, target);
      await delivered(1);
      d.notify("p1", "output", { event: "output", v: 2 }, target);
      assert.equal(d.deliveries("p1").at(-1)!.status, "pending");
      d.notify("p1", "completed", { event: "completed", v: 3 }, target);
      await delivered(2);
      assert.deepEqual(events(receiver), ["output:1", "completed:3"]);
      assert.deepEqual(d.deliveries("p1").map((s) => s.event), ["output", "completed"]);
    } finally {
      await d.close();
      await receiver.close();
    }
  });

  it("webhook_events_filter: only the listed events are sent, start and completed included", async () => {
    const receiver = await Receiver.start();
    const { d, clock, delivered } = setup();
    try {
      const only = (eventsFilter: ("start" | "output" | "logs" | "completed")[]) => ({ url: receiver.url, eventsFilter });
      for (const [id, filter] of [["c", ["completed"]], ["o", ["output"]]] as const) {
        d.notify(id, "start", { event: `${id}-start`, v: 0 }, only([...filter]));
        d.notify(id, "logs", { event: `${id}-logs`, v: 1 }, only([...filter]));
        clock.advance(500);
        d.notify(id, "output", { event: `${id}-output`, v: 2 }, only([...filter]));
        d.notify(id, "completed", { event: `${id}-completed`, v: 3 }, only([...filter]));
      }
      await delivered(2);
      assert.deepEqual(events(receiver).sort(), ["c-completed:3", "o-output:2"]);
      assert.deepEqual([d.deliveries("c").map((s) => s.event), d.deliveries("o").map((s) => s.event)], [["completed"], ["output"]]);
    } finally {
      await d.close();
      await receiver.close();
    }
  });

  it("one attempt at a time per prediction: start arrives before completed", async () => {
    const receiver = await Receiver.start();
    const { d, delivered } = setup();
    const target = { url: receiver.url, eventsFilter: null };
    try {
      for (const id of ["p1", "p2", "p3"]) {
        d.notify(id, "start", { event: "start", v: id }, target);
        d.notify(id, "completed", { event: "completed", v: id }, target);
      }
      await delivered(6);
      for (const id of ["p1", "p2", "p3"]) assert.deepEqual(events(receiver).filter((e) => e.endsWith(`:${id}`)), [`start:${id}`, `completed:${id}`]);
      d.forget("p1"); // retention: the job is deleted, its deliveries with it
      assert.deepEqual([d.deliveries("p1").length, d.deliveries("p2").length], [0, 2]);
    } finally {
      await d.close();
      await receiver.close();
    }
  });
});
