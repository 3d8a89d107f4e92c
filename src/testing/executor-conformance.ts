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
import { inspect } from "node:util";
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

/**
 * What the suite reads from a `ping` reply: `rank` always; `pid` only when the rank runs as a process on
 * this machine (docs/custom-executors.md, "The RPCs your system answers").
 */
interface PingLike {
  rank: number;
  pid?: number;
}

/** Where the rules the suite checks are written, for its messages. */
const DOCS = "docs/custom-executors.md";

/** A short, one-line picture of a value for an assertion message. */
function show(value: unknown): string {
  const text = inspect(value, { depth: 2, breakLength: Infinity, maxArrayLength: 4, maxStringLength: 40 });
  return text.length > 160 ? `${text.slice(0, 157)}...` : text;
}

/** The error's class and message, for an assertion message. */
function errText(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : show(err);
}

/** A process id of another process on this machine (a rank's worker), or null when the reply names none. */
function localPid(reply: PingLike): number | null {
  return Number.isInteger(reply.pid) && reply.pid! > 0 && reply.pid !== process.pid ? reply.pid! : null;
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
  throw new assert.AssertionError({ message: `checkHealth() still failed ${ms}ms after a worker was killed (${errText(last)}); an executor with restartsDeadWorkers must replace a dead worker and pass checkHealth again` });
}

/**
 * Registers a `describe` block that checks one executor against the DiffusionExecutor contract:
 * init, health (and, for backends that restart workers, failure and recovery after a SIGKILL),
 * `collectiveRpc("ping")` on every rank and with `uniqueReplyRank`, `executeModel` output shape and tagging,
 * per-request validation errors, conversion to OmniRequestOutput, and close semantics (no process left,
 * ClosedError afterwards, idempotent close).
 *
 * It asks only what docs/custom-executors.md promises: a `ping` reply per rank carries its `rank`, and a
 * `pid` only where the rank is a process on this machine (then the suite checks close() ends it, and kills
 * one when the class says `restartsDeadWorkers`). Every failed check says what was expected and why.
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

    /** `collectiveRpc("ping")`, checked to be one reply per rank, in rank order. */
    const ping = async (): Promise<PingLike[]> => {
      const replies = (await executor.collectiveRpc("ping")) as unknown;
      assert.ok(
        Array.isArray(replies) && replies.length >= 1,
        `collectiveRpc("ping") must return an array with one reply per rank (without uniqueReplyRank every rank answers); got ${show(replies)}. See ${DOCS}, "The RPCs your system answers".`,
      );
      replies.forEach((r: unknown, k) => {
        assert.ok(
          typeof r === "object" && r !== null && (r as PingLike).rank === k,
          `ping reply ${k} must be an object whose rank is ${k} (replies come in rank order, so callers index them by rank); got ${show(r)}`,
        );
        const pid = (r as PingLike).pid;
        assert.ok(
          pid === undefined || Number.isInteger(pid),
          `ping reply ${k}'s pid, when given, must be an integer process id (the suite checks that process is gone after close()); got ${show(pid)}`,
        );
        const local = localPid(r as PingLike);
        if (local !== null) seenPids.add(local);
      });
      return replies as PingLike[];
    };
    const request = (i: number, extra: Partial<ConstructorParameters<typeof OmniDiffusionRequest>[0]> = {}) =>
      new OmniDiffusionRequest({ prompt: `a red circle ${i}`, width: size, height: size, numInferenceSteps: steps, seed: i, ...extra });

    /** executeModel may return null by contract; a conformant local/remote backend returns an output. */
    const execute = async (requests: OmniDiffusionRequest[]): Promise<DiffusionOutput> => {
      const out = await executor.executeModel(requests);
      assert.ok(
        out instanceof DiffusionOutput,
        `executeModel must return a DiffusionOutput of this package (DiffusionOutput.fromDict turns a wire reply into one); got ${out === null ? "null" : show(out)}`,
      );
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
      await executor.checkHealth().catch((err: unknown) => {
        throw new assert.AssertionError({ message: `checkHealth() must pass right after init() (a started executor is healthy); it threw ${errText(err)}` });
      });
    });

    it('collectiveRpc("ping") reaches every rank, returns every reply in rank order, and refuses a uniqueReplyRank that is not a rank', { timeout }, async () => {
      const replies = await ping();
      if (opts.expectedRanks !== undefined) {
        assert.equal(replies.length, opts.expectedRanks, `expected ${opts.expectedRanks} ranks (the expectedRanks option), but collectiveRpc("ping") returned ${replies.length} replies`);
      }
      for (let k = 0; k < replies.length; k++) {
        const only = (await executor.collectiveRpc("ping", { uniqueReplyRank: k })) as PingLike;
        assert.ok(
          typeof only === "object" && only !== null && !Array.isArray(only),
          `collectiveRpc("ping", { uniqueReplyRank: ${k} }) must return rank ${k}'s reply alone, an object, not an array of replies; got ${show(only)}`,
        );
        assert.equal(only.rank, k, `collectiveRpc("ping", { uniqueReplyRank: ${k} }) must return the reply of rank ${k}; got one from rank ${show(only.rank)}`);
        assert.equal(only.pid, replies[k]!.pid, `rank ${k}'s ping reply names pid ${show(only.pid)} with uniqueReplyRank but ${show(replies[k]!.pid)} without: both calls reach the same rank`);
      }
      for (const bad of [replies.length, -1]) {
        await assert.rejects(executor.collectiveRpc("ping", { uniqueReplyRank: bad }), (err: unknown) => {
          assert.ok(
            err instanceof OmniError && err.code === "OMNI_ERR_VALIDATION",
            `uniqueReplyRank ${bad} is not a rank (there are ${replies.length}): collectiveRpc must throw a ValidationError (field "uniqueReplyRank"), not return a reply; it threw ${errText(err)}`,
          );
          return true;
        }, `uniqueReplyRank ${bad} is not a rank (there are ${replies.length}): collectiveRpc must throw a ValidationError, but it returned`);
      }
    });

    it("executeModel returns one image per output, of the requested size, tagged with its request id", { timeout }, async () => {
      const requests = [request(1), request(2, { numOutputsPerPrompt: 2 }), request(3)];
      const out = await execute(requests);
      assert.deepEqual(out.errors, {}, `three valid requests must run without per-request errors; output.errors holds ${show(out.errors)}`);
      assert.equal(out.error, null, `three valid requests must run without a batch error; output.error is ${show(out.error)}`);
      assert.equal(out.output.length, 4, `the requests ask for 1 + 2 + 1 images, so output.output must hold 4; it holds ${out.output.length}`);
      for (const r of requests) {
        const images = out.imagesFor(r.requestId);
        assert.equal(images.length, r.numOutputsPerPrompt, `request ${r.requestId} asked for ${r.numOutputsPerPrompt} image(s) and must get that many tagged with its requestId; got ${images.length}`);
        images.forEach((img, i) => {
          const which = `image ${i} of request ${r.requestId}`;
          assert.equal(img.requestId, r.requestId, `${which} must carry its request's requestId`);
          assert.equal(img.index, i, `${which} must have index ${i} (0 ... numOutputsPerPrompt - 1)`);
          assert.equal(img.width, size, `${which} must be ${size} px wide as requested; it is ${img.width}`);
          assert.equal(img.height, size, `${which} must be ${size} px high as requested; it is ${img.height}`);
          assert.equal(img.data.length, size * size * 3, `${which} must hold width x height x 3 bytes (8-bit RGB, no alpha); it holds ${img.data.length}`);
          assert.equal(img.seed, r.seed! + i, `${which} must record seed ${r.seed! + i} (the request's seed + index); it records ${show(img.seed)}`);
        });
        const res = OmniRequestOutput.fromDiffusionOutput(r, out, () => new OmniError("no output"));
        assert.equal(res.error, null, `request ${r.requestId}'s OmniRequestOutput must have no error; it has ${errText(res.error)}`);
        assert.equal(res.requestId, r.requestId, "an OmniRequestOutput keeps its request's id");
        assert.equal(res.images.length, r.numOutputsPerPrompt, `request ${r.requestId}'s OmniRequestOutput must hold its ${r.numOutputsPerPrompt} image(s)`);
        assert.equal(res.pngs().length, r.numOutputsPerPrompt, `request ${r.requestId}'s images must encode as PNGs`);
      }
      // The wire form round-trips (what remote executors and Python peers exchange).
      const again = DiffusionOutput.fromDict(JSON.parse(JSON.stringify(out.toDict())));
      assert.equal(again.output.length, 4, "the output's wire form (toDict, then fromDict) must keep all 4 images");
    });

    it("a request that fails validation gets its own error; the others still run", { timeout }, async () => {
      const good = request(4);
      const bad = request(5, { width: size + 3 });
      const out = await execute([good, bad]);
      const err = out.errors[bad.requestId];
      assert.ok(
        err instanceof ValidationError && err.code === "OMNI_ERR_VALIDATION" && err.field === "width",
        `a request ${size + 3} px wide (not a multiple of the model's size step) must fail alone, with a ValidationError for field "width" in output.errors[its requestId]; got ${err ? `${errText(err)} (field ${show((err as ValidationError).field)})` : "no error"}`,
      );
      assert.equal(out.imagesFor(good.requestId).length, 1, "the valid request in the same batch must still get its image: one request's failure is not the batch's");
      assert.equal(out.imagesFor(bad.requestId).length, 0, "the request that failed validation must get no image");
      const res = OmniRequestOutput.fromDiffusionOutput(bad, out, () => new OmniError("no output"));
      assert.equal(res.error, err, "the failed request's OmniRequestOutput must carry its own error");
      assert.equal(res.images.length, 0, "the failed request's OmniRequestOutput must hold no image");
    });

    it("checkHealth throws when a worker is dead, and passes again once it is restarted", { timeout: timeout + recoveryMs }, async (t) => {
      if (Executor.isRemote || !Executor.restartsDeadWorkers) {
        t.skip("backend has no local worker processes to kill");
        return;
      }
      const before = await ping();
      const victim = before[before.length - 1]!;
      const victimPid = localPid(victim);
      assert.ok(victimPid !== null, `restartsDeadWorkers is true, so each ping reply must name its worker's pid (the suite kills one to check it is replaced); rank ${victim.rank}'s reply is ${show(victim)}`);
      process.kill(victimPid, "SIGKILL");
      await assert.rejects(executor.checkHealth({ timeout: 10_000 }), (err: unknown) => {
        assert.ok(
          err instanceof UnhealthyError && err.code === "OMNI_ERR_UNHEALTHY",
          `with rank ${victim.rank}'s worker killed, checkHealth() must throw an UnhealthyError; it threw ${errText(err)}`,
        );
        assert.match(err.message, new RegExp(`rank ${victim.rank}\\b`), `the UnhealthyError must name the dead rank (rank ${victim.rank})`);
        assert.deepEqual(err.data.ranks, [victim.rank], `the UnhealthyError's data.ranks must list the dead rank, [${victim.rank}]`);
        return true;
      }, `with rank ${victim.rank}'s worker killed, checkHealth() must throw, but it passed`);
      await waitHealthy(executor, recoveryMs);
      const afterReplies = await ping();
      assert.equal(afterReplies.length, before.length, `after the restart every rank must answer ping again (${before.length} replies); got ${afterReplies.length}`);
      assert.notEqual(afterReplies[victim.rank]!.pid, victim.pid, `rank ${victim.rank} must run in a new process after its worker was killed`);
      assert.equal(isAlive(victimPid), false, `the killed worker (pid ${victimPid}) must be gone, not left as a stray process`);
      const out = await execute([request(6), request(7)]);
      assert.equal(out.output.length, 2, "the recovered executor must serve requests again");
    });

    it("close leaves no worker process, later calls throw ClosedError, and close twice is fine", { timeout }, async () => {
      await ping();
      await executor.close();
      assert.equal(executor.isClosed, true, "after close(), isClosed must be true");
      if (!Executor.isRemote) {
        for (const pid of seenPids) assert.equal(isAlive(pid), false, `worker pid ${pid} (named in a ping reply) is still running after close(): shutdown() must end every process it started`);
      }
      const closed = (what: string) => (err: unknown) => {
        assert.ok(err instanceof ClosedError, `${what} after close() must throw ClosedError (call this.assertOpen() first); it threw ${errText(err)}`);
        return true;
      };
      const calls: [string, () => Promise<unknown>][] = [
        ["executeModel", () => executor.executeModel([request(8)])],
        ['collectiveRpc("ping")', () => executor.collectiveRpc("ping")],
        ["checkHealth", () => executor.checkHealth()],
        ["sleep", () => executor.sleep()],
        ["abortRequest", () => executor.abortRequest("anything")],
      ];
      for (const [what, call] of calls) await assert.rejects(call(), closed(what), `${what} after close() must throw ClosedError, but it resolved`);
      await executor.close();
      await Promise.all([executor.close(), executor.close()]);
    });
  });
}
