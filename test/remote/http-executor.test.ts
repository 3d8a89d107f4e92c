import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { DiffusionEngine } from "../../src/engine/engine.js";
import { parseConfig } from "../../src/core/config.js";
import { DiffusionOutput } from "../../src/core/output.js";
import { OmniDiffusionRequest } from "../../src/core/request.js";
import { AbortedError, ConfigError, TimeoutError } from "../../src/errors/omni-error.js";
import { HttpDiffusionExecutor } from "../../src/executors/http-executor.js";
import type { StepProgress } from "../../src/pipelines/types.js";
import type { WorkerServer } from "../../src/server/worker/worker-server.js";
import { runExecutorConformance } from "../../src/testing/executor-conformance.js";
import { STEP_GATE, stepGate, type StepGateControl } from "../helpers/step-gate.js";
import { workerRpc } from "../helpers/worker-rpc.js";
import { startTestWorker } from "../helpers/worker-servers.js";

const T = 120_000;
const req = (i: number, extra: Partial<ConstructorParameters<typeof OmniDiffusionRequest>[0]> = {}) =>
  new OmniDiffusionRequest({ prompt: `a green square ${i}`, width: 32, height: 32, numInferenceSteps: 2, seed: i, ...extra });

/** POSTs JSON to the worker and returns status and parsed body. */
async function post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
  return { status: res.status, body: await res.json() };
}

describe("HttpDiffusionExecutor against a real worker server", { timeout: 10 * T }, () => {
  let server: WorkerServer;
  /** Holds a request at a step until released (or aborted): deadlines and aborts then meet work that cannot finish. */
  let gate: StepGateControl;
  before(async () => {
    server = await startTestWorker({ httpPort: 0, engine: { workerExtension: STEP_GATE } });
    gate = stepGate(workerRpc(server.httpUrl!));
  });
  after(async () => {
    await server?.close();
  });

  runExecutorConformance("http", () => ({ executorClass: "http", executorOptions: { endpoints: [server.httpUrl!] } }), { expectedRanks: 1 });

  it("rejects bad executorOptions before connecting", () => {
    assert.throws(() => new HttpDiffusionExecutor(parseConfig({ executorOptions: { endpoints: ["http://x:1"], retires: 2 } })), ConfigError);
    assert.throws(() => new HttpDiffusionExecutor(parseConfig({ executorOptions: { endpoints: ["ftp://x:1"] } })), ConfigError);
    assert.throws(() => new HttpDiffusionExecutor(parseConfig({})), /needs executorOptions.endpoints/);
  });

  it("a repeated request id attaches to the running work: one generation, two identical answers", { timeout: T }, async () => {
    const stats = async () => ((await post(`${server.httpUrl}/v1/diffusion/rpc`, { method: "getStats", unique_reply_rank: 0 })).body.result as { requestsDone: number }).requestsDone;
    const before = await stats();
    const dict = req(1, { requestId: "same-id-1", numInferenceSteps: 4 }).toDict();
    const [a, b] = await Promise.all([post(`${server.httpUrl}/v1/diffusion/generate`, { requests: [dict] }), post(`${server.httpUrl}/v1/diffusion/generate`, { requests: [dict] })]);
    assert.equal(a.status, 200);
    assert.equal(b.status, 200);
    const ia = DiffusionOutput.fromDict(a.body.outputs[0]).imagesFor("same-id-1");
    const ib = DiffusionOutput.fromDict(b.body.outputs[0]).imagesFor("same-id-1");
    assert.equal(ia.length, 1);
    assert.deepEqual(ib[0]!.data, ia[0]!.data);
    assert.equal((await stats()) - before, 1, "the worker generated the request once");
    // A retry after the answer (a lost response) is served from the recent results, still without a second run.
    const again = await post(`${server.httpUrl}/v1/diffusion/generate`, { requests: [dict] });
    assert.equal(DiffusionOutput.fromDict(again.body.outputs[0]).imagesFor("same-id-1").length, 1);
    assert.equal((await stats()) - before, 1);
    // The same id with other parameters is a conflict, not a silent reuse.
    const other = await post(`${server.httpUrl}/v1/diffusion/generate`, { requests: [{ ...dict, prompt: "something else" }] });
    assert.equal(other.body.outputs[0].errors["same-id-1"].code, "OMNI_ERR_VALIDATION");
  });

  it("the worker honours the deadline sent in x-omni-timeout-ms", { timeout: T }, async () => {
    // The request is held before its first step, so only the deadline can end it, however fast the machine.
    // The deadline may pass at the server, the engine or the worker, and each says so in its own words.
    const dict = req(2).toDict();
    await gate.hold(0, dict.request_id as string);
    try {
      const r = await post(`${server.httpUrl}/v1/diffusion/generate`, { requests: [dict] }, { "x-omni-timeout-ms": "100" });
      assert.equal(r.status, 200);
      const err = r.body.outputs[0].errors[dict.request_id as string];
      assert.equal(err.code, "OMNI_ERR_TIMEOUT", JSON.stringify(err));
      assert.match(err.message, /deadline|timed out/);
    } finally {
      await gate.release(dict.request_id as string);
    }
  });

  it("the executor's own budget ends a call with a TimeoutError", { timeout: T }, async () => {
    const ex = new HttpDiffusionExecutor(parseConfig({ executorOptions: { endpoints: [server.httpUrl!], timeoutMs: 200 } }));
    await ex.init();
    // Held before its first step: the call cannot finish, so the 200 ms budget is what ends it.
    const r = req(3);
    await gate.hold(0, r.requestId);
    try {
      const out = await ex.executeModel([r]);
      assert.ok(out.errors[r.requestId] instanceof TimeoutError, `TimeoutError, got ${out.errors[r.requestId]?.name}`);
      assert.deepEqual(out.output, []);
    } finally {
      await gate.release(r.requestId);
      await ex.close();
    }
  });

  it("streams step progress over server-sent events and aborts on the server between steps", { timeout: T }, async () => {
    const engine = await DiffusionEngine.create({ executorClass: "http", numGpus: 2, executorOptions: { endpoints: [server.httpUrl!], stream: true } });
    try {
      const steps: StepProgress[] = [];
      const done = await engine.generate(req(4, { numInferenceSteps: 3 }), { onProgress: (p) => steps.push(p) });
      assert.equal(done.images.length, 1);
      assert.deepEqual(steps.map((p) => p.step), [1, 2, 3]);

      // Held after its first step (its progress event is the latch): the abort meets a run that cannot have
      // finished, and without the abort it would finish its 4 steps once released.
      const long = req(5, { numInferenceSteps: 4 });
      await gate.hold(1, long.requestId);
      let firstStep!: () => void;
      const started = new Promise<void>((resolve) => (firstStep = resolve));
      const pending = engine.generate(long, { onProgress: () => firstStep() });
      await started;
      const rejected = assert.rejects(pending, AbortedError); // watched first: it can settle before abort() resolves
      assert.equal(await engine.abort(long.requestId), true);
      await rejected;
      await gate.release(long.requestId);
    } finally {
      await engine.close();
    }
  });
});
