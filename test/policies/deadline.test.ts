/**
 * `Deadline` (src/policies/deadline.ts) on node:test's mock timers: time moves only when the test ticks it,
 * so "not yet" and "now" are decided here, never raced against the machine's load.
 */
import assert from "node:assert/strict";
import { getEventListeners } from "node:events";
import { afterEach, beforeEach, describe, it, mock } from "node:test";
import { AbortedError, OmniError, TimeoutError, ValidationError } from "../../src/errors/omni-error.js";
import { Deadline } from "../../src/policies/deadline.js";

const START = 1_700_000_000_000;

/** An `onTimeout` that counts its calls and names the time it was called at. */
function timeouts(): { make: () => TimeoutError; calls: number[] } {
  const calls: number[] = [];
  return {
    calls,
    make: () => {
      calls.push(Date.now());
      return new TimeoutError(`timed out at ${Date.now()}`);
    },
  };
}

describe("Deadline", () => {
  beforeEach(() => mock.timers.enable({ apis: ["setTimeout", "Date"], now: START }));
  afterEach(() => mock.timers.reset());

  it("is an absolute time: `at`, `ms` and a `remaining()` that counts down and never goes below 0", () => {
    const dl = new Deadline(1_000, undefined, timeouts().make);
    try {
      assert.equal(dl.at, START + 1_000);
      assert.equal(dl.ms, 1_000);
      assert.equal(dl.remaining(), 1_000);
      mock.timers.tick(400);
      assert.equal(dl.remaining(), 600);
      mock.timers.tick(5_000);
      assert.equal(dl.remaining(), 0);
    } finally {
      dl.dispose();
    }
  });

  it("aborts its signal exactly at the deadline, with the TimeoutError `onTimeout` builds at that moment", () => {
    const t = timeouts();
    const dl = new Deadline(1_000, undefined, t.make);
    let fired = 0;
    dl.signal.addEventListener("abort", () => fired++);
    mock.timers.tick(999);
    assert.equal(dl.signal.aborted, false);
    assert.deepEqual(t.calls, [], "onTimeout is not called before the deadline");
    mock.timers.tick(1);
    assert.equal(dl.signal.aborted, true);
    assert.equal(fired, 1);
    assert.deepEqual(t.calls, [START + 1_000], "built once, when the deadline passed");
    assert.ok(dl.signal.reason instanceof TimeoutError);
    assert.equal((dl.signal.reason as TimeoutError).message, `timed out at ${START + 1_000}`);
    assert.equal(dl.callerAborted, false);
    dl.dispose();
    assert.ok(dl.signal.reason instanceof TimeoutError, "dispose after the deadline keeps the timeout as the reason");
  });

  it("a budget of 0 or less passes at the next timer turn", () => {
    const t = timeouts();
    const dl = new Deadline(-50, undefined, t.make);
    assert.equal(dl.remaining(), 0);
    assert.equal(dl.signal.aborted, false, "not synchronously: the caller can still attach its waits");
    mock.timers.tick(0);
    assert.ok(dl.signal.reason instanceof TimeoutError);
    assert.equal(t.calls.length, 1);
  });

  it("aborts with an AbortedError naming the caller's reason when the caller's signal aborts first", () => {
    const t = timeouts();
    const caller = new AbortController();
    const dl = new Deadline(1_000, caller.signal, t.make);
    caller.abort(new Error("user pressed stop"));
    assert.equal(dl.signal.aborted, true);
    assert.equal(dl.callerAborted, true);
    assert.ok(dl.signal.reason instanceof AbortedError);
    assert.match((dl.signal.reason as AbortedError).message, /aborted by the caller: user pressed stop/);
    assert.equal((dl.signal.reason as AbortedError).cause instanceof Error, true);
    mock.timers.tick(2_000);
    assert.deepEqual(t.calls, [], "the deadline's timeout never builds once the caller ended the operation");
    assert.ok(dl.signal.reason instanceof AbortedError);
    dl.dispose();
  });

  it("passes a caller's OmniError reason through unchanged, and a reason that is not an Error as a plain abort", () => {
    const typed = new ValidationError("bad field", { field: "prompt" });
    const a = new AbortController();
    const dlA = new Deadline(1_000, a.signal, timeouts().make);
    a.abort(typed);
    assert.equal(dlA.signal.reason, typed);
    assert.ok(dlA.signal.reason instanceof OmniError);
    dlA.dispose();

    const b = new AbortController();
    const dlB = new Deadline(1_000, b.signal, timeouts().make);
    b.abort("just because");
    assert.ok(dlB.signal.reason instanceof AbortedError);
    assert.equal((dlB.signal.reason as AbortedError).message, "aborted by the caller");
    dlB.dispose();
  });

  it("starts aborted, with no timer, when the caller's signal already aborted", () => {
    const t = timeouts();
    const dl = new Deadline(1_000, AbortSignal.abort(new Error("gone")), t.make);
    assert.equal(dl.signal.aborted, true);
    assert.equal(dl.callerAborted, true);
    assert.ok(dl.signal.reason instanceof AbortedError);
    mock.timers.tick(5_000);
    assert.deepEqual(t.calls, []);
    dl.dispose();
  });

  it("dispose stops the timer, ends the signal as finished, detaches from the caller, and is idempotent", () => {
    const t = timeouts();
    const caller = new AbortController();
    const dl = new Deadline(1_000, caller.signal, t.make);
    dl.dispose();
    assert.equal(dl.signal.aborted, true, "waits still attached to the signal are dropped");
    const finished = dl.signal.reason as AbortedError;
    assert.ok(finished instanceof AbortedError);
    assert.equal(finished.message, "operation finished");
    mock.timers.tick(5_000);
    assert.deepEqual(t.calls, [], "no timeout after dispose");
    caller.abort(new Error("late"));
    assert.equal(dl.callerAborted, false, "the caller's later abort is not heard");
    assert.equal(dl.signal.reason, finished);
    dl.dispose();
    assert.equal(dl.signal.reason, finished);
  });

  describe("race", () => {
    it("settles like the promise when it settles in time", async () => {
      const dl = new Deadline(1_000, undefined, timeouts().make);
      try {
        assert.equal(await dl.race(Promise.resolve(42)), 42);
        await assert.rejects(dl.race(Promise.reject(new ValidationError("no", { field: "x" }))), ValidationError);
      } finally {
        dl.dispose();
      }
    });

    it("rejects with the TimeoutError when the deadline passes first, whatever the promise does later", async () => {
      const dl = new Deadline(1_000, undefined, timeouts().make);
      let finish!: (v: string) => void;
      const slow = new Promise<string>((resolve) => (finish = resolve));
      const raced = dl.race(slow);
      mock.timers.tick(1_000);
      await assert.rejects(raced, TimeoutError);
      finish("too late");
      dl.dispose();
    });

    it("rejects at once when the signal already aborted, and leaves no unhandled rejection behind", async () => {
      const dl = new Deadline(10, undefined, timeouts().make);
      mock.timers.tick(10);
      const unhandled: unknown[] = [];
      const onUnhandled = (e: unknown) => unhandled.push(e);
      process.on("unhandledRejection", onUnhandled);
      try {
        await assert.rejects(dl.race(Promise.reject(new Error("late failure"))), TimeoutError);
        // Two turns of the microtask and macrotask queues: where an unhandled rejection would be reported.
        await new Promise<void>((resolve) => setImmediate(resolve));
        await new Promise<void>((resolve) => setImmediate(resolve));
        assert.deepEqual(unhandled, []);
      } finally {
        process.off("unhandledRejection", onUnhandled);
        dl.dispose();
      }
    });

    it("detaches its listener once the promise settles (many races on one deadline do not pile up)", async () => {
      const dl = new Deadline(1_000, undefined, timeouts().make);
      const attached = () => getEventListeners(dl.signal, "abort").length;
      const before = attached();
      for (let i = 0; i < 100; i++) assert.equal(await dl.race(Promise.resolve(i)), i);
      await assert.rejects(dl.race(Promise.reject(new Error("x"))), /x/);
      assert.equal(attached(), before, "every race removed its listener");
      dl.dispose();
    });
  });

  describe("onExpire (the hot path's form)", () => {
    it("is called once, at the deadline, with the TimeoutError; a signal read afterwards is already aborted with it", () => {
      const t = timeouts();
      const heard: TimeoutError[] = [];
      const dl = new Deadline(1_000, undefined, t.make, (e) => heard.push(e));
      mock.timers.tick(999);
      assert.equal(heard.length, 0);
      mock.timers.tick(1);
      assert.equal(heard.length, 1);
      assert.equal(heard[0]!.message, `timed out at ${START + 1_000}`);
      assert.equal(dl.signal.aborted, true);
      assert.equal(dl.signal.reason, heard[0], "the signal carries the same error");
      mock.timers.tick(5_000);
      dl.dispose();
      assert.equal(heard.length, 1, "once");
      assert.equal(t.calls.length, 1);
    });

    it("is not called when the operation ended first (dispose) or the caller aborted", () => {
      const heard: TimeoutError[] = [];
      const done = new Deadline(1_000, undefined, timeouts().make, (e) => heard.push(e));
      done.dispose();
      const caller = new AbortController();
      const aborted = new Deadline(1_000, caller.signal, timeouts().make, (e) => heard.push(e));
      caller.abort(new Error("stop"));
      mock.timers.tick(2_000);
      assert.deepEqual(heard, []);
      assert.ok(done.signal.reason instanceof AbortedError, "a disposed deadline's signal reads as finished");
      assert.ok(aborted.signal.reason instanceof AbortedError);
      assert.equal(aborted.callerAborted, true);
      aborted.dispose();
    });
  });
});
