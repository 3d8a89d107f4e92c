import assert from "node:assert/strict";
import { test } from "node:test";
import { BusyTime } from "../../src/server/ui/busy-time.js";

// The server's busy time behind the playground's Images/s: executor calls arrive as (end, duration, images)
// in the order they end, and overlapping calls count their shared time once.

test("calls one after another add up; a gap between them is not busy", () => {
  const b = new BusyTime();
  b.record(1_000, 1_000, 1);
  b.record(3_000, 500, 2);
  assert.deepEqual(b.totals, { images: 3, busySeconds: 1.5 });
});

test("overlapping calls count their shared time once, whatever order they end in", () => {
  const b = new BusyTime();
  b.record(3_000, 1_000, 1); // [2, 3] s
  b.record(10_000, 10_000, 1); // [0, 10] s, started before the first
  b.record(12_000, 11_000, 1); // [1, 12] s
  assert.deepEqual(b.totals, { images: 3, busySeconds: 12 });
  b.record(12_000, 0, 0);
  b.record(11_000, 2_000, 1); // inside what is already busy
  assert.deepEqual(b.totals, { images: 4, busySeconds: 12 });
});

test("a call that spans two earlier ones with a gap between them adds only the gap", () => {
  const b = new BusyTime();
  b.record(2_000, 1_000, 1); // [1, 2] s
  b.record(6_000, 1_000, 1); // [5, 6] s
  b.record(7_000, 7_000, 1); // [0, 7] s
  assert.deepEqual(b.totals, { images: 3, busySeconds: 7 });
});
