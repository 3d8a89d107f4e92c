/**
 * `executeModel(requests, { signal })` and `engine.step(requests, { signal })`: an aborted signal ends a
 * running request like an abort by id does. Every request here is held at a step by the step gate
 * (test/fixtures/workers/step-gate.ts), so only the abort can let it go on: nothing races the clock. After
 * each abort a second request runs to its end on the same worker; it shares the step loop with the held one,
 * so by the time it answers the loop has seen the abort, and the worker must have no request left in flight.
 * (The multi-process executor's case is in multiproc.test.ts, "an aborted signal rejects executeModel ...".)
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { parseConfig, type OmniDiffusionConfigInput } from "../../src/core/config.js";
import { OmniDiffusionRequest } from "../../src/core/request.js";
import { DiffusionEngine } from "../../src/engine/engine.js";
import { AbortedError } from "../../src/errors/omni-error.js";
import type { DiffusionExecutor } from "../../src/executors/base.js";
import { HttpDiffusionExecutor } from "../../src/executors/http-executor.js";
import { UniprocExecutor } from "../../src/executors/uniproc-executor.js";
import type { StepProgress } from "../../src/pipelines/types.js";
import type { WorkerServer } from "../../src/server/worker/worker-server.js";
import { STEP_GATE, stepGate, type StepGateControl } from "../helpers/step-gate.js";
import { workerRpc } from "../helpers/worker-rpc.js";
import { until } from "../helpers/server.js";
import { startTestWorker } from "../helpers/worker-servers.js";

const T = 120_000;
const LOCAL: OmniDiffusionConfigInput = { executorClass: "uniproc", intraOpNumThreads: 1, workerExtension: STEP_GATE, allowNonNativeSizes: true };

const req = (id: string, steps: number) => new OmniDiffusionRequest({ requestId: id, prompt: "a red circle on a blue background", width: 32, height: 32, numInferenceSteps: steps, seed: 7 });

/** Resolves at the request's first progress event at `step` or later: it is then held there by the gate. */
function reaching(requestId: string, step: number): { onProgress: (p: StepProgress) => void; reached: Promise<void> } {
  let done!: () => void;
  const reached = new Promise<void>((r) => (done = r));
  return { reached, onProgress: (p) => p.requestId === requestId && p.step >= step && done() };
}

/**
 * Resolves once the request waits inside its held step (not merely between steps, where the step loop
 * would see any abort by itself): only the abort under test can then let it go on.
 */
async function heldInStep(gate: StepGateControl, requestId: string): Promise<void> {
  await until(async () => (await gate.status()).some((s) => s.held.some((h) => h.requestId === requestId)), `${requestId} held in its step`);
}

/** A request run to its end after the abort, then no request in flight on the worker. */
async function workerLetGo(run: (r: OmniDiffusionRequest) => Promise<number>, stats: () => Promise<{ inFlight: number }>, id: string): Promise<void> {
  assert.equal(await run(req(`${id}-next`, 2)), 1, "the next request got its image");
  assert.equal((await stats()).inFlight, 0, "the aborted request no longer runs on the worker");
}

/** executeModel with a signal aborted while the request is held at step 1: AbortedError, and the worker lets go. */
async function abortsThroughSignal(ex: DiffusionExecutor, gate: StepGateControl, id: string): Promise<void> {
  const r = req(id, 20);
  await gate.hold(1, r.requestId);
  const ac = new AbortController();
  const { onProgress, reached } = reaching(r.requestId, 1);
  const run = ex.executeModel([r], { signal: ac.signal, onProgress });
  await reached;
  await heldInStep(gate, r.requestId);
  ac.abort();
  await assert.rejects(run, AbortedError);
  await workerLetGo(
    async (next) => (await ex.executeModel([next]))!.imagesFor(next.requestId).length,
    async () => ((await ex.collectiveRpc("getStats", { uniqueReplyRank: 0 })) as { inFlight: number }),
    id,
  );
}

describe("executeModel honours its AbortSignal", { timeout: 4 * T }, () => {
  it("uniproc: the request held at a step ends with an AbortedError and leaves the worker", { timeout: T }, async () => {
    const ex = new UniprocExecutor(parseConfig(LOCAL));
    await ex.init();
    try {
      await abortsThroughSignal(ex, stepGate(ex), "sig-uniproc");
    } finally {
      await ex.close();
    }
  });

  describe("http (remote): the server is told to stop the request", () => {
    let server: WorkerServer;
    before(async () => {
      server = await startTestWorker({ httpPort: 0, engine: { workerExtension: STEP_GATE } });
    });
    after(async () => {
      await server?.close();
    });

    it("the request held at a step ends with an AbortedError and leaves the remote worker", { timeout: T }, async () => {
      const ex = new HttpDiffusionExecutor(parseConfig({ executorOptions: { endpoints: [server.httpUrl!], stream: true } }));
      await ex.init();
      try {
        await abortsThroughSignal(ex, stepGate(workerRpc(server.httpUrl!)), "sig-http");
      } finally {
        await ex.close();
      }
    });
  });
});

/** A uniproc executor that cannot stop a request by id: only the batch's signal can end it. */
class SignalOnlyExecutor extends UniprocExecutor {
  static override readonly supportsAbortMidStep: boolean = false;
  override async abortRequest(): Promise<void> {}
}

describe("the engine aborts through a signal", { timeout: 3 * T }, () => {
  it("engine.step(requests, { signal }): the held request's output is an AbortedError", { timeout: T }, async () => {
    const engine = await DiffusionEngine.create(LOCAL);
    try {
      const gate = stepGate(engine);
      const r = req("step-signal", 20);
      await gate.hold(1, r.requestId);
      const ac = new AbortController();
      const run = engine.step([r], { signal: ac.signal });
      await heldInStep(gate, r.requestId);
      ac.abort();
      const [out] = await run;
      assert.ok(out!.error instanceof AbortedError, `AbortedError, got ${String(out!.error)}`);
      await workerLetGo(
        async (next) => (await engine.generate(next)).images.length,
        async () => ((await engine.collectiveRpc("getStats", { uniqueReplyRank: 0 })) as { inFlight: number }),
        "step-signal",
      );
    } finally {
      await engine.close();
    }
  });

  it("engine.abort(id) on an executor that cannot stop a request by id ends it through its batch's signal", { timeout: T }, async () => {
    const engine = await DiffusionEngine.create({ ...LOCAL, executorClass: SignalOnlyExecutor });
    try {
      const gate = stepGate(engine);
      const r = req("batch-signal", 20);
      await gate.hold(1, r.requestId);
      const { onProgress, reached } = reaching(r.requestId, 1);
      const run = engine.generate(r, { onProgress });
      await reached;
      await heldInStep(gate, r.requestId);
      const rejected = assert.rejects(run, AbortedError); // watched first: it can settle before abort() resolves
      assert.equal(await engine.abort(r.requestId), true);
      await rejected;
      await workerLetGo(
        async (next) => (await engine.generate(next)).images.length,
        async () => ((await engine.collectiveRpc("getStats", { uniqueReplyRank: 0 })) as { inFlight: number }),
        "batch-signal",
      );
    } finally {
      await engine.close();
    }
  });
});
