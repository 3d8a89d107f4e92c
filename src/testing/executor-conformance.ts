/**
 * The executor conformance suite: the behaviour every DiffusionExecutor must show, run unchanged against
 * each backend. Capabilities are read from the class's static flags (`isRemote`, `restartsDeadWorkers`),
 * never from `instanceof` a concrete executor.
 *
 * Shipped as `omni-diffusion/testing` so an executor written against the published package can run it.
 * It registers node:test `describe`/`it` blocks, so it must be called at the top level of a file run by
 * Node's test runner (`node --test`, with `--import tsx` for TypeScript). It imports this package's own
 * classes, so the executor under test must extend the `DiffusionExecutor` of the same installed copy.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { parseConfig, type OmniDiffusionConfig, type OmniDiffusionConfigInput } from "../core/config.js";
import { DiffusionOutput } from "../core/output.js";
import { OmniDiffusionRequest } from "../core/request.js";
import { OmniRequestOutput } from "../core/request-output.js";
import { ClosedError, OmniError, UnhealthyError, ValidationError } from "../errors/omni-error.js";
import type { DiffusionExecutor, DiffusionExecutorClass } from "../executors/base.js";
import { resolveExecutor } from "../executors/resolve-executor.js";
import { isAlive } from "./is-alive.js";

/** Knobs of {@link runExecutorConformance}. */
export interface ConformanceOptions {
  /** Width and height of the test images (a multiple of the model's size multiple). Default 32. */
  size?: number;
  /** Denoising steps per test request. Default 2. */
  steps?: number;
  /** Per-test timeout, ms. Default 120 000 (a busy 2-core machine loads models slowly). */
  testTimeoutMs?: number;
  /** How long a restarted worker may take to pass checkHealth again, ms. Default 60 000. */
  recoveryTimeoutMs?: number;
  /** Number of ranks the executor should report, when known. */
  expectedRanks?: number;
}

interface PingLike {
  rank: number;
  pid: number;
  time: number;
}

/** Polls checkHealth until it passes or `ms` elapse; returns the last error on failure. */
async function waitHealthy(executor: DiffusionExecutor, ms: number): Promise<void> {
  const until = Date.now() + ms;
  let last: unknown;
  while (Date.now() < until) {
    try {
      await executor.checkHealth({ timeout: Math.min(5_000, Math.max(1, until - Date.now())) });
      return;
    } catch (err) {
      last = err;
    }
    await delay(100);
  }
  throw new assert.AssertionError({ message: `executor did not become healthy within ${ms}ms: ${(last as Error)?.message}` });
}

/**
 * Registers a `describe` block that checks one executor against the DiffusionExecutor contract:
 * init, health (and, for backends that restart workers, failure and recovery after a SIGKILL),
 * `collectiveRpc("ping")` on every rank and with `uniqueReplyRank`, `executeModel` output shape and tagging,
 * per-request validation errors, conversion to OmniRequestOutput, and close semantics (no process left,
 * ClosedError afterwards, idempotent close).
 *
 * @example
 * ```ts
 * // my-executor.test.ts, run with: node --import tsx --test my-executor.test.ts
 * import { runExecutorConformance } from "omni-diffusion/testing";
 * runExecutorConformance("MyExecutor", () => ({ executorClass: "./my-executor.ts#MyExecutor", intraOpNumThreads: 1 }));
 * ```
 */
export function runExecutorConformance(name: string, makeConfig: () => OmniDiffusionConfigInput, opts: ConformanceOptions = {}): void {
  const size = opts.size ?? 32;
  const steps = opts.steps ?? 2;
  const timeout = opts.testTimeoutMs ?? 120_000;
  const recoveryMs = opts.recoveryTimeoutMs ?? 60_000;

  describe(`executor conformance: ${name}`, { timeout: timeout * 10 }, () => {
    let config: OmniDiffusionConfig;
    let Executor: DiffusionExecutorClass & { restartsDeadWorkers?: boolean };
    let executor: DiffusionExecutor;
    /** Every worker pid seen (restarted ones too): none may survive close(). */
    const seenPids = new Set<number>();

    const ping = async (): Promise<PingLike[]> => {
      const replies = (await executor.collectiveRpc("ping")) as PingLike[];
      for (const r of replies) if (r.pid !== process.pid) seenPids.add(r.pid);
      return replies;
    };
    const request = (i: number, extra: Partial<ConstructorParameters<typeof OmniDiffusionRequest>[0]> = {}) =>
      new OmniDiffusionRequest({ prompt: `a red circle ${i}`, width: size, height: size, numInferenceSteps: steps, seed: i, ...extra });

    /** executeModel may return null by contract; a conformant local/remote backend returns an output. */
    const execute = async (requests: OmniDiffusionRequest[]): Promise<DiffusionOutput> => {
      const out = await executor.executeModel(requests);
      assert.ok(out instanceof DiffusionOutput, `executeModel returned a DiffusionOutput (got ${out === null ? "null" : typeof out})`);
      return out;
    };

    before(async () => {
      config = parseConfig(makeConfig());
      Executor = (await resolveExecutor(config.executorClass)) as typeof Executor;
      executor = new (Executor as unknown as new (c: OmniDiffusionConfig) => DiffusionExecutor)(config);
      await executor.init();
    });

    after(async () => {
      await executor?.close();
    });

    it("initializes and passes checkHealth", { timeout }, async () => {
      await executor.checkHealth();
    });

    it('collectiveRpc("ping") reaches every rank, returns every reply in rank order, and refuses a uniqueReplyRank that is not a rank', { timeout }, async () => {
      const replies = await ping();
      assert.ok(Array.isArray(replies) && replies.length >= 1, "one reply per rank");
      if (opts.expectedRanks !== undefined) assert.equal(replies.length, opts.expectedRanks);
      replies.forEach((r, k) => {
        assert.equal(r.rank, k, `reply ${k} comes from rank ${k}`);
        assert.equal(typeof r.pid, "number");
      });
      for (let k = 0; k < replies.length; k++) {
        const only = (await executor.collectiveRpc("ping", { uniqueReplyRank: k })) as PingLike;
        assert.ok(!Array.isArray(only), "uniqueReplyRank returns one reply, not an array");
        assert.equal(only.rank, k);
        assert.equal(only.pid, replies[k]!.pid);
      }
      for (const bad of [replies.length, -1]) {
        await assert.rejects(executor.collectiveRpc("ping", { uniqueReplyRank: bad }), (err: unknown) => {
          assert.ok(err instanceof OmniError && err.code === "OMNI_ERR_VALIDATION", `uniqueReplyRank ${bad} is refused with a ValidationError, got ${(err as Error)?.name}: ${(err as Error)?.message}`);
          return true;
        });
      }
    });

    it("executeModel returns one image per output, of the requested size, tagged with its request id", { timeout }, async () => {
      const requests = [request(1), request(2, { numOutputsPerPrompt: 2 }), request(3)];
      const out = await execute(requests);
      assert.deepEqual(out.errors, {}, "no per-request errors");
      assert.equal(out.error, null);
      assert.equal(out.output.length, 4, "1 + 2 + 1 images");
      for (const r of requests) {
        const images = out.imagesFor(r.requestId);
        assert.equal(images.length, r.numOutputsPerPrompt, `request ${r.requestId}`);
        images.forEach((img, i) => {
          assert.equal(img.requestId, r.requestId);
          assert.equal(img.index, i);
          assert.equal(img.width, size);
          assert.equal(img.height, size);
          assert.equal(img.data.length, size * size * 3);
          assert.equal(img.seed, r.seed! + i);
        });
        const res = OmniRequestOutput.fromDiffusionOutput(r, out, () => new OmniError("no output"));
        assert.equal(res.error, null);
        assert.equal(res.requestId, r.requestId);
        assert.equal(res.images.length, r.numOutputsPerPrompt);
        assert.equal(res.pngs().length, r.numOutputsPerPrompt);
      }
      // The wire form round-trips (what remote executors and Python peers exchange).
      const again = DiffusionOutput.fromDict(JSON.parse(JSON.stringify(out.toDict())));
      assert.equal(again.output.length, 4);
    });

    it("a request that fails validation gets its own error; the others still run", { timeout }, async () => {
      const good = request(4);
      const bad = request(5, { width: size + 3 });
      const out = await execute([good, bad]);
      assert.equal(out.imagesFor(good.requestId).length, 1);
      assert.equal(out.imagesFor(bad.requestId).length, 0);
      const err = out.errors[bad.requestId];
      assert.ok(err instanceof ValidationError, `ValidationError, got ${err?.name}: ${err?.message}`);
      assert.equal(err.code, "OMNI_ERR_VALIDATION");
      assert.equal(err.field, "width");
      const res = OmniRequestOutput.fromDiffusionOutput(bad, out, () => new OmniError("no output"));
      assert.equal(res.error, err);
      assert.equal(res.images.length, 0);
    });

    it("checkHealth throws when a worker is dead, and passes again once it is restarted", { timeout: timeout + recoveryMs }, async (t) => {
      if (Executor.isRemote || !Executor.restartsDeadWorkers) {
        t.skip("backend has no local worker processes to kill");
        return;
      }
      const before = await ping();
      const victim = before[before.length - 1]!;
      process.kill(victim.pid, "SIGKILL");
      await assert.rejects(executor.checkHealth({ timeout: 10_000 }), (err: unknown) => {
        assert.ok(err instanceof UnhealthyError, `UnhealthyError, got ${(err as Error)?.name}: ${(err as Error)?.message}`);
        assert.equal(err.code, "OMNI_ERR_UNHEALTHY");
        assert.match(err.message, new RegExp(`rank ${victim.rank}\\b`));
        assert.deepEqual(err.data.ranks, [victim.rank]);
        return true;
      });
      await waitHealthy(executor, recoveryMs);
      const afterReplies = await ping();
      assert.equal(afterReplies.length, before.length);
      assert.notEqual(afterReplies[victim.rank]!.pid, victim.pid, "the rank runs in a new process");
      assert.equal(isAlive(victim.pid), false, "the killed process is gone");
      const out = await execute([request(6), request(7)]);
      assert.equal(out.output.length, 2, "the recovered executor serves requests");
    });

    it("close leaves no worker process, later calls throw ClosedError, and close twice is fine", { timeout }, async () => {
      await ping();
      await executor.close();
      assert.equal(executor.isClosed, true);
      if (!Executor.isRemote) {
        for (const pid of seenPids) assert.equal(isAlive(pid), false, `worker pid ${pid} still running after close()`);
      }
      await assert.rejects(executor.executeModel([request(8)]), ClosedError);
      await assert.rejects(executor.collectiveRpc("ping"), ClosedError);
      await assert.rejects(executor.checkHealth(), ClosedError);
      await assert.rejects(executor.sleep(), ClosedError);
      await assert.rejects(executor.abortRequest("anything"), ClosedError);
      await executor.close();
      await Promise.all([executor.close(), executor.close()]);
    });
  });
}
