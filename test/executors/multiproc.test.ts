import assert from "node:assert/strict";
import { ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it, type TestContext } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { parseConfig, type OmniDiffusionConfigInput } from "../../src/core/config.js";
import { OmniDiffusionRequest } from "../../src/core/request.js";
import {
  AbortedError,
  ClosedError,
  ConfigError,
  ModelLoadError,
  TimeoutError,
  UnhealthyError,
  UnknownMethodError,
  ValidationError,
  WorkerDiedError,
} from "../../src/errors/omni-error.js";
import { MultiprocExecutor, type WorkerEvent } from "../../src/executors/multiproc-executor.js";
import { UniprocExecutor } from "../../src/executors/uniproc-executor.js";
import type { StepProgress } from "../../src/pipelines/types.js";
import { runExecutorConformance } from "../../src/testing/executor-conformance.js";
import { ManualClock, type ManualTimer } from "../helpers/manual-clock.js";
import { isAlive, waitGone, waitStopped } from "../helpers/processes.js";
import { until } from "../helpers/server.js";
import { STEP_GATE, stepGate } from "../helpers/step-gate.js";

const EXTENSION = `${fileURLToPath(new URL("../fixtures/workers/test-extension.ts", import.meta.url))}#TestWorkerExtension`;
/** The test extension plus the step gate (test/fixtures/workers/step-gate.ts): requests wait at a step until released or aborted. */
const GATED_EXTENSION = `${fileURLToPath(new URL("../fixtures/workers/gated-test-extension.ts", import.meta.url))}#GatedTestExtension`;
const ORPHAN_PARENT = fileURLToPath(new URL("../fixtures/executors/orphan-parent.ts", import.meta.url));
const TEST_TIMEOUT = 120_000;

runExecutorConformance("multiproc (2 workers)", () => ({ numGpus: 2, intraOpNumThreads: 1 }), { expectedRanks: 2 });

type Ping = { rank: number; pid: number };

const req = (i: number, steps = 2, extra: Partial<ConstructorParameters<typeof OmniDiffusionRequest>[0]> = {}) =>
  new OmniDiffusionRequest({ prompt: `a blue square ${i}`, width: 32, height: 32, numInferenceSteps: steps, seed: i, ...extra });

async function started(input: OmniDiffusionConfigInput, clock?: ManualClock): Promise<MultiprocExecutor> {
  const ex = new MultiprocExecutor(parseConfig({ numGpus: 2, intraOpNumThreads: 1, ...input }), { clock });
  await ex.init();
  return ex;
}

/** Polls checkHealth until it passes (the restarted worker is ready) within `ms`. */
async function waitHealthy(ex: MultiprocExecutor, ms = 60_000): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    try {
      return await ex.checkHealth({ timeout: 5_000 });
    } catch (err) {
      if (Date.now() > until) throw err;
    }
    await delay(100);
  }
}

/** A latch across processes: a file path a worker waits for; `open()` creates it. */
function latchFile(): { path: string; open: () => void } {
  const dir = mkdtempSync(join(tmpdir(), "omni-latch-"));
  const path = join(dir, "open");
  return {
    path,
    open: () => {
      writeFileSync(path, "");
      setTimeout(() => rmSync(dir, { recursive: true, force: true }), 5_000).unref();
    },
  };
}

/**
 * The `timeout` of a call whose deadline the test passes by ticking node:test's mock timers (the parent's
 * deadline timers are `setTimeout`s). The worker also refuses a call that reaches it past the deadline on its
 * real clock: at the test's own limit, that check cannot pass first.
 */
const MOCK_DEADLINE_MS = TEST_TIMEOUT;

/** The worker pids, by rank. */
async function pids(ex: MultiprocExecutor): Promise<number[]> {
  return ((await ex.collectiveRpc("whoami")) as Ping[]).map((w) => w.pid);
}

/**
 * Resolves once `n` RPC replies of worker process `pid` have reached the parent and been handled (counted
 * from this call): a spy on the ChildProcess "message" events, so a test knows a rank has answered before it
 * lets a deadline pass. Restored when the test ends.
 */
function repliesFrom(t: TestContext, pid: number, n: number): Promise<void> {
  const emit = ChildProcess.prototype.emit;
  let seen = 0;
  return new Promise<void>((resolve) => {
    t.mock.method(ChildProcess.prototype, "emit", function (this: ChildProcess, event: string | symbol, ...args: unknown[]): boolean {
      const handled = Reflect.apply(emit, this, [event, ...args]) as boolean;
      if (event === "message" && this.pid === pid && (args[0] as { type?: unknown } | null)?.type === "reply" && ++seen === n) {
        // The executor settles the call in the reply's promise jobs; resume the test after them.
        setImmediate(resolve);
      }
      return handled;
    });
  });
}

/** Resolves at the first `type` event of rank `rank` (a latch on the executor's worker events). */
function nextWorkerEvent(ex: MultiprocExecutor, type: WorkerEvent["type"], rank: number): Promise<WorkerEvent> {
  return new Promise((resolve) => {
    const sub = ex.onWorkerEvent((e) => {
      if (e.type !== type || e.rank !== rank) return;
      sub.dispose();
      resolve(e);
    });
  });
}

/** Resolves with the first progress event (a latch), rejecting if none arrives within `ms`. */
function firstProgress(ms = 30_000): { onProgress: (p: StepProgress) => void; first: Promise<StepProgress> } {
  let resolve!: (p: StepProgress) => void;
  let reject!: (e: Error) => void;
  const first = new Promise<StepProgress>((res, rej) => ((resolve = res), (reject = rej)));
  const t = setTimeout(() => reject(new Error(`no progress within ${ms}ms`)), ms);
  return {
    first,
    onProgress: (p) => {
      clearTimeout(t);
      resolve(p);
    },
  };
}

describe("MultiprocExecutor with a worker extension", { timeout: 10 * TEST_TIMEOUT }, () => {
  let ex: MultiprocExecutor;
  before(async () => {
    ex = await started({ workerExtension: GATED_EXTENSION, maxWorkerRetries: 1, executorOptions: { shutdownGraceMs: 500 } });
  });
  after(async () => {
    await ex?.close();
  });

  it("exposes the extension's public methods as RPC methods, args and kwargs included", { timeout: TEST_TIMEOUT }, async () => {
    const who = (await ex.collectiveRpc("whoami")) as Ping[];
    assert.deepEqual(who.map((w) => w.rank), [0, 1]);
    const echo = await ex.collectiveRpc("echo", { args: [1, "a"], kwargs: { k: true }, uniqueReplyRank: 1 });
    assert.deepEqual(echo, [1, "a", { k: true }]);
    await assert.rejects(ex.collectiveRpc("_notExposed"), UnknownMethodError);
  });

  it("an unknown method fails with UnknownMethodError naming the method and the rank", { timeout: TEST_TIMEOUT }, async () => {
    await assert.rejects(ex.collectiveRpc("noSuchMethod"), (err: unknown) => {
      assert.ok(err instanceof UnknownMethodError);
      assert.equal(err.code, "OMNI_ERR_UNKNOWN_METHOD");
      assert.match(err.message, /noSuchMethod/);
      assert.ok(err.data.rank === 0 || err.data.rank === 1);
      return true;
    });
  });

  it("a worker's error comes back as the same class, with its rank", { timeout: TEST_TIMEOUT }, async () => {
    await assert.rejects(ex.collectiveRpc("fail", { args: ["boom"] }), (err: unknown) => {
      assert.ok(err instanceof ValidationError);
      assert.equal(err.message, "boom");
      assert.equal(err.field, "fixtureField");
      assert.equal(typeof err.data.rank, "number");
      return true;
    });
  });

  it("collectiveRpc past its deadline throws one TimeoutError naming the method and the silent ranks", { timeout: TEST_TIMEOUT }, async (t) => {
    const [pid0] = await pids(ex);
    // The deadline passes when the test ticks the mock clock, and only after rank 0's reply is in, so rank 0
    // is never the silent one however loaded the machine (before, rank 0 raced a real 3 s deadline).
    t.mock.timers.enable({ apis: ["setTimeout"] });
    const rank0Answered = repliesFrom(t, pid0!, 1);
    const call = assert.rejects(ex.collectiveRpc("slowOnRanks", { args: [[1], 60_000], timeout: MOCK_DEADLINE_MS }), (err: unknown) => {
      assert.ok(err instanceof TimeoutError, `TimeoutError, got ${(err as Error).name}`);
      assert.match(err.message, /"slowOnRanks"/);
      assert.match(err.message, /rank\(s\) 1$/);
      assert.equal(err.data.method, "slowOnRanks");
      assert.deepEqual(err.data.ranks, [1]);
      return true;
    });
    await rank0Answered;
    t.mock.timers.tick(MOCK_DEADLINE_MS);
    await call;
    t.mock.timers.reset();
    // The slow call keeps running on rank 1, but the rank still answers.
    assert.equal(((await ex.collectiveRpc("ping", { uniqueReplyRank: 1 })) as Ping).rank, 1);
  });

  it("checkHealth names a rank that is alive but does not answer within the deadline", { timeout: TEST_TIMEOUT }, async (t) => {
    // Rank 0 stays blocked until the test releases it (a file latch), so it cannot answer in time however
    // fast or slow the machine. The deadline passes when the test ticks the mock clock, after rank 1's ping
    // reply is in (before, rank 1 raced a real 3 s deadline, and earlier a 2 s block raced 300 ms).
    const [, pid1] = await pids(ex);
    const release = latchFile();
    // Rank 1 answers the block call at once, then the ping (IPC and the worker keep order): its 2nd reply.
    const rank1Answered = repliesFrom(t, pid1!, 2);
    const blocked = ex.collectiveRpc("blockUntilFile", { args: [[0], release.path] }); // on the real clock
    await new Promise(setImmediate); // the block call is on the wire before the pings (IPC keeps order)
    t.mock.timers.enable({ apis: ["setTimeout"] });
    try {
      const health = assert.rejects(ex.checkHealth({ timeout: MOCK_DEADLINE_MS }), (err: unknown) => {
        assert.ok(err instanceof UnhealthyError, `UnhealthyError, got ${(err as Error).name}`);
        assert.deepEqual(err.data.ranks, [0]);
        assert.match(err.message, new RegExp(`rank 0: no ping reply within ${MOCK_DEADLINE_MS}ms`));
        return true;
      });
      await rank1Answered;
      t.mock.timers.tick(MOCK_DEADLINE_MS);
      await health;
    } finally {
      t.mock.timers.reset();
      release.open();
    }
    assert.deepEqual(((await blocked) as Ping[]).map((r) => r.rank), [0, 1]);
    await ex.checkHealth();
  });

  it("spreads a batch over both ranks and merges the outputs", { timeout: TEST_TIMEOUT }, async () => {
    const stats = async () => ((await ex.collectiveRpc("getStats")) as { requestsDone: number }[]).map((s) => s.requestsDone);
    const before = await stats();
    const requests = [0, 1, 2, 3].map((i) => req(i));
    const out = await ex.executeModel(requests);
    assert.deepEqual(out.errors, {});
    for (const r of requests) assert.equal(out.imagesFor(r.requestId).length, 1);
    const afterStats = await stats();
    assert.deepEqual(afterStats.map((n, i) => n - before[i]!), [2, 2]);
  });

  it("sleep drops the sessions and wakeUp brings them back", { timeout: TEST_TIMEOUT }, async () => {
    const slept = (await ex.sleep()) as { rank: number; asleep: boolean; level: number }[];
    assert.deepEqual(slept.map((s) => [s.rank, s.asleep, s.level]), [[0, true, 1], [1, true, 1]]);
    const asleep = (await ex.collectiveRpc("getStats")) as { asleep: boolean; components: string[] }[];
    for (const s of asleep) {
      assert.equal(s.asleep, true);
      assert.ok(!s.components.includes("unet"));
    }
    const woke = (await ex.wakeUp(["weights"])) as { asleep: boolean }[];
    assert.deepEqual(woke.map((w) => w.asleep), [false, false]);
    const awake = (await ex.collectiveRpc("getStats")) as { components: string[] }[];
    for (const s of awake) assert.ok(s.components.includes("unet"));
    const out = await ex.executeModel([req(10)]);
    assert.equal(out.output.length, 1);
    await assert.rejects(ex.sleep(0), ValidationError);
  });

  it("abortRequest stops a running request between steps", { timeout: TEST_TIMEOUT }, async () => {
    // The request waits after its first step until the abort reaches its worker (which opens the gate), so
    // it is surely still running then, and stops at the next step boundary: step 2.
    const gate = stepGate(ex);
    const r = req(20, 40);
    await gate.hold(1, r.requestId);
    try {
      const { onProgress, first } = firstProgress();
      const run = ex.executeModel([r], { onProgress });
      await first;
      await ex.abortRequest(r.requestId);
      const out = await run;
      const err = out.errors[r.requestId];
      assert.ok(err instanceof AbortedError, `AbortedError, got ${err?.name}: ${err?.message}`);
      assert.equal(err.data.step, 2);
      assert.equal(out.imagesFor(r.requestId).length, 0);
    } finally {
      await gate.release();
    }
  });

  it("an aborted signal rejects executeModel and stops the work on the worker", { timeout: TEST_TIMEOUT }, async () => {
    // Held after its first step: only the abort the signal sends to the worker lets the request leave.
    const gate = stepGate(ex);
    const r = req(21, 40);
    await gate.hold(1, r.requestId);
    try {
      const ac = new AbortController();
      const { onProgress, first } = firstProgress();
      const run = ex.executeModel([r], { onProgress, signal: ac.signal });
      await first;
      ac.abort();
      await assert.rejects(run, AbortedError);
      // The worker stopped the request (it is no longer in flight) and keeps serving.
      const out = await ex.executeModel([req(22)]);
      assert.equal(out.output.length, 1);
      const stats = (await ex.collectiveRpc("getStats")) as { inFlight: number }[];
      assert.deepEqual(stats.map((s) => s.inFlight), [0, 0]);
    } finally {
      await gate.release();
    }
  });

  it("a batch past its deadline reports TimeoutError for the unfinished requests", { timeout: TEST_TIMEOUT }, async () => {
    // Both ranks are held by a file latch, so the batch waits behind it and its deadline surely passes
    // first (before, 900 steps raced a 300 ms deadline).
    const release = latchFile();
    const blocked = ex.collectiveRpc("blockUntilFile", { args: [[0, 1], release.path] });
    await new Promise(setImmediate);
    try {
      const r = req(23, 2);
      const out = await ex.executeModel([r], { timeout: 300 });
      assert.ok(out.errors[r.requestId] instanceof TimeoutError, `got ${out.errors[r.requestId]?.name}`);
    } finally {
      release.open();
    }
    await blocked;
    assert.equal(((await ex.collectiveRpc("ping", { uniqueReplyRank: 0 })) as Ping).rank, 0);
  });

  it("SIGKILL of a worker during a batch: its requests are retried, every request gets an image, the worker comes back", { timeout: TEST_TIMEOUT }, async () => {
    const gate = stepGate(ex);
    const pids = (await ex.collectiveRpc("ping")) as Ping[];
    const requests = [0, 1, 2, 3].map((i) => req(30 + i, 4));
    // Every request waits after its first step (those not admitted yet wait behind them), so nothing can
    // finish: rank 1 surely dies with its two requests unfinished.
    await gate.hold(1);
    const run = ex.executeModel(requests);
    await until(async () => (await gate.status()).every((r) => r.held.length > 0), "a request held on each rank");
    const exited = nextWorkerEvent(ex, "exited", 1);
    process.kill(pids[1]!.pid, "SIGKILL");
    await exited;
    // Rank 0 is released at once; the call completes once the restarted rank 1 (no holds) answers it too.
    const [out] = await Promise.all([run, gate.release()]);
    for (const r of requests) {
      assert.equal(out.errors[r.requestId], undefined, `request ${r.requestId}: ${out.errors[r.requestId]?.message}`);
      assert.equal(out.imagesFor(r.requestId).length, 1);
    }
    await waitHealthy(ex);
    const now = (await ex.collectiveRpc("ping")) as Ping[];
    assert.notEqual(now[1]!.pid, pids[1]!.pid);
    assert.equal(now[0]!.pid, pids[0]!.pid);
    assert.equal(isAlive(pids[1]!.pid), false);
  });
});

describe("MultiprocExecutor shutdown", { timeout: 3 * TEST_TIMEOUT }, () => {
  it("SIGKILLs a worker that does not exit within the grace period; pending calls fail with ClosedError", { timeout: TEST_TIMEOUT }, async () => {
    const ex = await started({ workerExtension: EXTENSION, executorOptions: { shutdownGraceMs: 200 } });
    const pids = ((await ex.collectiveRpc("ping")) as Ping[]).map((p) => p.pid);
    const stuck = ex.collectiveRpc("blockOnRanks", { args: [[1], 60_000] });
    const stuckResult = stuck.then(
      () => null,
      (err: unknown) => err,
    );
    // One event-loop turn flushes the microtasks that send the call; IPC order puts it before "shutdown".
    await new Promise(setImmediate);
    await ex.close();
    assert.deepEqual(pids.filter(isAlive), []);
    const err = await stuckResult;
    assert.ok(err instanceof ClosedError, `ClosedError, got ${(err as Error)?.name}: ${(err as Error)?.message}`);
  });
});

describe("MultiprocExecutor heartbeats", { timeout: 5 * TEST_TIMEOUT }, () => {
  // The heartbeat deadlines run on a ManualClock: the test decides when time passes, and lets it pass only
  // after the live workers have beaten (real beats, from their heartbeat threads). A loaded machine can make
  // beats late but never makes a live worker look hung, and a stopped one is found however fast the machine.
  const TIMEOUT_MS = 2_000;

  it("a SIGSTOPped worker is SIGKILLed when its heartbeats stop, replaced, and its requests retried; a long blocking call is not a hang", { timeout: TEST_TIMEOUT }, async () => {
    const clock = new ManualClock();
    const ex = await started({ workerExtension: EXTENSION, maxWorkerRetries: 1, executorOptions: { heartbeatIntervalMs: 50, heartbeatTimeoutMs: TIMEOUT_MS } }, clock);
    const events: WorkerEvent[] = [];
    let restarted!: (e: WorkerEvent) => void;
    const restartedLatch = new Promise<WorkerEvent>((resolve) => (restarted = resolve));
    ex.onWorkerEvent((e) => {
      events.push(e);
      if (e.type === "restarted") restarted(e);
    });
    try {
      const pids = (await ex.collectiveRpc("ping")) as Ping[];
      await clock.armed(2);
      const [first, second] = clock.timers as [ManualTimer, ManualTimer];

      // A call holds rank 0's main thread (like a long UNet call) while 2.5 heartbeat deadlines pass, each
      // half-deadline only after both ranks beat again: the beats come from a thread of their own.
      const release = latchFile();
      const began = `${release.path}.began`;
      const blocked = ex.collectiveRpc("blockUntilFile", { args: [[0], release.path, 120_000, began] });
      while (!existsSync(began)) await delay(5);
      for (let i = 0; i < 5; i++) {
        clock.advance(TIMEOUT_MS / 2);
        await Promise.all([clock.nextRefresh(first), clock.nextRefresh(second)]);
      }
      release.open();
      assert.deepEqual(((await blocked) as Ping[]).map((p) => p.rank), [0, 1]);
      assert.equal(events.length, 0, `no worker was taken for hung while it computed: ${JSON.stringify(events)}`);

      // Rank 1 stops (still alive, never answering); a batch is then spread over both ranks.
      const stopped = pids[1]!.pid;
      process.kill(stopped, "SIGSTOP");
      await waitStopped(stopped);
      // Rank 0's timer is the one that beats twice after the stop (rank 1 can flush at most one read's worth
      // of beats it wrote before stopping).
      const seen = new Map<ManualTimer, number>();
      let live: ManualTimer | undefined;
      while (!live) {
        const t = await clock.nextRefresh();
        seen.set(t, (seen.get(t) ?? 0) + 1);
        if (seen.get(t)! >= 2) live = t;
      }
      const requests = [0, 1, 2, 3].map((i) => req(60 + i, 2));
      const running = ex.executeModel(requests);
      while (!events.some((e) => e.type === "unresponsive")) {
        clock.advance(TIMEOUT_MS / 2);
        if (events.some((e) => e.type === "unresponsive")) break;
        await clock.nextRefresh(live);
      }
      const out = await running;
      for (const r of requests) {
        assert.equal(out.errors[r.requestId], undefined, `request ${r.requestId}: ${out.errors[r.requestId]?.message}`);
        assert.equal(out.imagesFor(r.requestId).length, 1);
      }
      const back = await restartedLatch;
      assert.deepEqual(
        events.map((e) => [e.type, e.rank, e.pid === stopped]),
        [
          ["unresponsive", 1, true],
          ["exited", 1, true],
          ["restarted", 1, false],
        ],
      );
      const exited = events[1] as Extract<WorkerEvent, { type: "exited" }>;
      assert.equal(exited.signal, "SIGKILL");
      assert.ok(exited.silentMs! >= TIMEOUT_MS);
      assert.equal(isAlive(stopped), false);
      const now = (await ex.collectiveRpc("ping")) as Ping[];
      assert.deepEqual(now.map((p) => p.pid), [pids[0]!.pid, back.pid]);
    } finally {
      await ex.close();
    }
  });

  it("without retries, the hung worker's call fails with a WorkerDiedError saying it missed its heartbeats", { timeout: TEST_TIMEOUT }, async () => {
    const clock = new ManualClock();
    const ex = await started({ numGpus: 1, maxWorkerRetries: 0, executorOptions: { heartbeatIntervalMs: 50, heartbeatTimeoutMs: 500 } }, clock);
    try {
      const [{ pid }] = (await ex.collectiveRpc("ping")) as [Ping];
      await clock.armed(1);
      process.kill(pid, "SIGSTOP");
      await waitStopped(pid);
      const ping = ex.collectiveRpc("ping");
      clock.advance(500);
      await assert.rejects(ping, (err: unknown) => {
        assert.ok(err instanceof WorkerDiedError, `WorkerDiedError, got ${(err as Error).name}: ${(err as Error).message}`);
        assert.match(err.message, /sent no heartbeat for \d+ms and was killed \(SIGKILL\)/);
        assert.equal(err.data.rank, 0);
        assert.ok((err.data.silentMs as number) >= 500);
        return true;
      });
      assert.equal(isAlive(pid), false);
    } finally {
      await ex.close();
    }
  });
});

describe("local executors refuse unknown executorOptions", () => {
  it("multiproc and uniproc throw a ConfigError naming the unknown option before any process starts", () => {
    assert.throws(() => new MultiprocExecutor(parseConfig({ executorOptions: { shutdownGraceMS: 100 } })), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.data.field, "executorOptions.shutdownGraceMS");
      assert.match(err.message, /unknown executorOptions for MultiprocExecutor: shutdownGraceMS \(known: .*shutdownGraceMs/);
      return true;
    });
    assert.throws(() => new UniprocExecutor(parseConfig({ executorClass: "uniproc", executorOptions: { endpoints: ["x"] } })), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /unknown executorOptions for UniprocExecutor: endpoints/);
      return true;
    });
    assert.throws(() => new MultiprocExecutor(parseConfig({ executorOptions: { heartbeatIntervalMs: 1_000, heartbeatTimeoutMs: 500 } })), /heartbeatTimeoutMs/);
    assert.ok(new MultiprocExecutor(parseConfig({ executorOptions: { heartbeatIntervalMs: 0 } })));
    assert.ok(new UniprocExecutor(parseConfig({ executorClass: "uniproc", executorOptions: { healthTimeoutMs: 100 } })));
  });
});

describe("MultiprocExecutor without retries", { timeout: 5 * TEST_TIMEOUT }, () => {
  let ex: MultiprocExecutor;
  before(async () => {
    ex = await started({ maxWorkerRetries: 0, workerExtension: STEP_GATE });
  });
  after(async () => {
    await ex?.close();
  });

  it("SIGKILL during a batch: the dead rank's requests fail with WorkerDiedError, the others succeed, health recovers", { timeout: TEST_TIMEOUT }, async () => {
    const gate = stepGate(ex);
    const pids = (await ex.collectiveRpc("ping")) as Ping[];
    const requests = [0, 1, 2, 3].map((i) => req(40 + i, 4));
    // Every request waits after its first step (or behind one that does): rank 1's two are surely unfinished when it dies.
    await gate.hold(1);
    const run = ex.executeModel(requests);
    await until(async () => (await gate.status()).every((r) => r.held.length > 0), "a request held on each rank");
    const exited = nextWorkerEvent(ex, "exited", 1);
    process.kill(pids[1]!.pid, "SIGKILL");
    await exited;
    const [out] = await Promise.all([run, gate.release()]);
    let died = 0;
    for (const r of requests) {
      const err = out.errors[r.requestId];
      const images = out.imagesFor(r.requestId);
      assert.ok((images.length === 1) !== (err !== undefined), `request ${r.requestId} has an image or an error, not both or neither`);
      if (err) {
        assert.ok(err instanceof WorkerDiedError, `WorkerDiedError, got ${err.name}: ${err.message}`);
        assert.equal(err.code, "OMNI_ERR_WORKER_DIED");
        assert.equal(err.data.rank, 1);
        assert.equal(err.data.signal, "SIGKILL");
        assert.equal(err.retryable, true);
        died++;
      }
    }
    assert.equal(died, 2, "the two requests of rank 1");
    await waitHealthy(ex);
    const out2 = await ex.executeModel([req(50), req(51)]);
    assert.equal(out2.output.length, 2);
  });
});

describe("MultiprocExecutor start-up failures", { timeout: 5 * TEST_TIMEOUT }, () => {
  it("a bad model folder rejects init with the worker's ModelLoadError and leaves no process", { timeout: TEST_TIMEOUT }, async () => {
    const ex = new MultiprocExecutor(parseConfig({ numGpus: 2, intraOpNumThreads: 1, model: "/nonexistent/omni-model" }));
    await assert.rejects(ex.init(), (err: unknown) => {
      assert.ok(err instanceof ModelLoadError, `ModelLoadError, got ${(err as Error).name}: ${(err as Error).message}`);
      assert.match(err.message, /\/nonexistent\/omni-model/);
      assert.ok(err.data.rank === 0 || err.data.rank === 1);
      return true;
    });
    const pids = ex.rankStatus.map((s) => s.pid).filter((p): p is number => p !== undefined);
    assert.equal(pids.length, 2);
    assert.deepEqual(pids.filter(isAlive), []);
    await ex.close();
    await ex.close();
  });

  it("a worker extension that redefines a built-in method rejects init with a ConfigError", { timeout: TEST_TIMEOUT }, async () => {
    const spec = `${fileURLToPath(new URL("../fixtures/workers/test-extension.ts", import.meta.url))}#ClashingExtension`;
    const ex = new MultiprocExecutor(parseConfig({ numGpus: 1, intraOpNumThreads: 1, workerExtension: spec }));
    await assert.rejects(ex.init(), (err: unknown) => {
      assert.ok(err instanceof ConfigError, `ConfigError, got ${(err as Error).name}: ${(err as Error).message}`);
      assert.match(err.message, /ping/);
      assert.equal(err.data.rank, 0);
      return true;
    });
    await ex.close();
  });

  it("a start-up deadline that passes rejects init with a TimeoutError naming the ranks", { timeout: TEST_TIMEOUT }, async () => {
    const ex = new MultiprocExecutor(parseConfig({ numGpus: 2, intraOpNumThreads: 1, workerStartTimeoutMs: 1 }));
    await assert.rejects(ex.init(), (err: unknown) => {
      assert.ok(err instanceof TimeoutError, `TimeoutError, got ${(err as Error).name}`);
      assert.deepEqual(err.data.ranks, [0, 1]);
      return true;
    });
    const pids = ex.rankStatus.map((s) => s.pid).filter((p): p is number => p !== undefined);
    assert.deepEqual(pids.filter(isAlive), []);
    await ex.close();
  });
});

describe("MultiprocExecutor leaves no orphan processes", { timeout: 5 * TEST_TIMEOUT }, () => {
  const runParent = async (mode: "exit" | "wait") => {
    const child = spawn(process.execPath, ["--import", "tsx", ORPHAN_PARENT, mode], { stdio: ["ignore", "pipe", "inherit"] });
    let buf = "";
    child.stdout.setEncoding("utf8");
    const line = await new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("the fixture parent printed no pids within 60s")), 60_000);
      child.stdout.on("data", (d: string) => {
        buf += d;
        const nl = buf.indexOf("\n");
        if (nl >= 0) {
          clearTimeout(t);
          resolve(buf.slice(0, nl));
        }
      });
      child.once("exit", (code) => reject(new Error(`the fixture parent exited (${code}) before printing pids`)));
    });
    return { child, pids: (JSON.parse(line) as { pids: number[] }).pids };
  };

  it("workers are killed when the parent exits without close()", { timeout: TEST_TIMEOUT }, async () => {
    const { child, pids } = await runParent("exit");
    assert.equal(pids.length, 2);
    if (child.exitCode === null) await once(child, "exit");
    assert.deepEqual(await waitGone(pids, 10_000), []);
  });

  it("workers exit by themselves when the parent is SIGKILLed", { timeout: TEST_TIMEOUT }, async () => {
    const { child, pids } = await runParent("wait");
    assert.deepEqual(pids.filter(isAlive), pids);
    child.kill("SIGKILL");
    await once(child, "exit");
    assert.deepEqual(await waitGone(pids, 10_000), []);
  });
});
