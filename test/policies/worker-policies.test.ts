/**
 * The local executors' restart and retry policies (src/policies/worker-policies.ts): the schedule each
 * computes, read from cockatiel's retry events (delays are computed values, never measured).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { WorkerDiedError, WorkerError } from "../../src/errors/omni-error.js";
import { pollDelayMs, pollPolicy, restartPolicy, workerRetryPolicy } from "../../src/policies/worker-policies.js";

describe("restartPolicy", () => {
  it("starts at most `attempts` times, doubling the backoff, and throws the last start's error", async () => {
    const policy = restartPolicy({ attempts: 4, backoffMs: 1 });
    const delays: number[] = [];
    policy.onRetry((e) => delays.push(e.delay));
    let starts = 0;
    await assert.rejects(
      policy.execute(async () => {
        starts++;
        throw new WorkerError(`start ${starts} failed`);
      }),
      { message: "start 4 failed" },
    );
    assert.equal(starts, 4);
    assert.deepEqual(delays, [1, 2, 4]);
  });

  it("stops at the first start that succeeds", async () => {
    const policy = restartPolicy({ attempts: 3, backoffMs: 0 });
    let starts = 0;
    const v = await policy.execute(async () => {
      if (++starts < 2) throw new WorkerError("load failed");
      return "ready";
    });
    assert.equal(v, "ready");
    assert.equal(starts, 2);
  });

  it("makes one start for attempts <= 1", async () => {
    let starts = 0;
    await assert.rejects(
      restartPolicy({ attempts: 1, backoffMs: 0 }).execute(async () => {
        starts++;
        throw new WorkerError("no");
      }),
    );
    assert.equal(starts, 1);
  });
});

describe("workerRetryPolicy", () => {
  it("retries only what shouldRetry accepts, at once, up to `retries` times", async () => {
    const delays: number[] = [];
    const died = workerRetryPolicy(2, (e) => e instanceof WorkerDiedError);
    died.onRetry((e) => delays.push(e.delay));
    let tries = 0;
    await assert.rejects(
      died.execute(async () => {
        tries++;
        throw new WorkerDiedError("rank died");
      }),
      WorkerDiedError,
    );
    assert.equal(tries, 3);
    assert.deepEqual(delays, [0, 0]);

    tries = 0;
    await assert.rejects(
      died.execute(async () => {
        tries++;
        throw new WorkerError("a request's own failure");
      }),
      WorkerError,
    );
    assert.equal(tries, 1, "a failure that is not a worker death is not retried");
  });
});

describe("pollPolicy", () => {
  it("polls at a constant interval while keepGoing allows, then throws the last error", async () => {
    const delays: number[] = [];
    let rounds = 0;
    const poll = pollPolicy(1, () => rounds < 3);
    poll.onRetry((e) => delays.push(e.delay));
    await assert.rejects(
      poll.execute(async () => {
        rounds++;
        throw new WorkerError(`round ${rounds}: no worker yet`);
      }),
      { message: "round 3: no worker yet" },
    );
    assert.deepEqual(delays, [1, 1]);
  });

  it("with maxIntervalMs, doubles its wait from intervalMs up to maxIntervalMs (the remote executors' start-up)", async () => {
    const delays: number[] = [];
    let rounds = 0;
    const poll = pollPolicy(1, () => rounds < 6, 5);
    poll.onRetry((e) => delays.push(e.delay));
    await assert.rejects(
      poll.execute(async () => {
        rounds++;
        throw new WorkerError(`round ${rounds}: no endpoint yet`);
      }),
      { message: "round 6: no endpoint yet" },
    );
    assert.deepEqual(delays, [1, 2, 4, 5, 5]);
    assert.deepEqual([1, 2, 3, 4, 5].map((r) => pollDelayMs(1, 5, r)), delays, "pollDelayMs names the same waits");
  });
});
