/**
 * Step progress crosses a process boundary only when something reads it: a request's own `onProgress`,
 * an `engine.onStep` listener, or routing across several ranks. Each progress message costs both processes
 * a wake-up, so a plain `generate()` gets none, and its `firstStepMs` still comes back (the worker's own).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { parseConfig } from "../../src/core/config.js";
import { OmniDiffusionRequest } from "../../src/core/request.js";
import { DiffusionEngine } from "../../src/engine/engine.js";
import type { ExecuteOptions } from "../../src/executors/base.js";
import { WorkerProcess } from "../../src/executors/shared/worker-process.js";
import { UniprocExecutor } from "../../src/executors/uniproc-executor.js";
import type { DiffusionOutput } from "../../src/core/output.js";
import { MODEL_DIR } from "../helpers/model.js";

const T = 120_000;
const req = (seed: number) => new OmniDiffusionRequest({ prompt: "a green square on a white background", width: 32, height: 32, numInferenceSteps: 3, seed });

describe("a worker process sends progress messages only for calls that asked for them", { timeout: 2 * T }, () => {
  let proc: WorkerProcess;
  const progressMessages: unknown[] = [];
  before(async () => {
    proc = new WorkerProcess(0, { rank: 0, modelDir: MODEL_DIR, load: { intraOpNumThreads: 1 } });
    proc.child.on("message", (m: { type?: string }) => {
      if (m?.type === "progress") progressMessages.push(m);
    });
    await proc.ready;
  });
  after(async () => {
    await proc?.stop(5_000);
  });

  it("no onProgress: the reply and nothing else", async () => {
    progressMessages.length = 0;
    const reply = (await proc.call("generate", [[req(1).toTransfer()]], { transfer: true }, { deadline: Date.now() + T })) as { output: unknown[] };
    assert.equal(reply.output.length, 1);
    assert.equal(progressMessages.length, 0);
  });

  it("with onProgress: every step is reported", async () => {
    progressMessages.length = 0;
    const steps: number[] = [];
    await proc.call("generate", [[req(2).toTransfer()]], { transfer: true }, { deadline: Date.now() + T, onProgress: (p) => steps.push(p.step) });
    assert.deepEqual(steps, [1, 2, 3]);
    assert.ok(progressMessages.length >= 1);
  });
});

/** The in-process executor, recording whether the engine asked it for step progress. */
class RecordingExecutor extends UniprocExecutor {
  static asked: boolean[] = [];
  override executeModel(requests: OmniDiffusionRequest[], opts: ExecuteOptions = {}): Promise<DiffusionOutput> {
    RecordingExecutor.asked.push(opts.onProgress !== undefined);
    return super.executeModel(requests, opts);
  }
}

describe("the engine asks its executor for steps only when someone listens", { timeout: 2 * T }, () => {
  let engine: DiffusionEngine;
  before(async () => {
    engine = await DiffusionEngine.create(parseConfig({ executorClass: RecordingExecutor, intraOpNumThreads: 1 }));
  });
  after(async () => {
    await engine?.close();
  });

  it("a plain generate: no progress asked, firstStepMs still reported", async () => {
    RecordingExecutor.asked = [];
    const out = await engine.generate(req(3));
    assert.equal(out.error, null);
    assert.deepEqual(RecordingExecutor.asked, [false]);
    assert.equal(typeof out.metrics.firstStepMs, "number");
    assert.ok(out.metrics.firstStepMs! >= 0 && out.metrics.firstStepMs! <= out.metrics.totalMs!, `firstStepMs ${out.metrics.firstStepMs} within totalMs ${out.metrics.totalMs}`);
  });

  it("a request's own onProgress, or an onStep listener, asks for them", async () => {
    RecordingExecutor.asked = [];
    const mine: number[] = [];
    await engine.generate(req(4), { onProgress: (p) => mine.push(p.step) });
    assert.deepEqual(mine, [1, 2, 3]);
    const seen: string[] = [];
    const sub = engine.onStep((e) => seen.push(`${e.step}/${e.totalSteps}`));
    try {
      await engine.generate(req(5));
    } finally {
      sub.dispose();
    }
    assert.deepEqual(seen, ["1/3", "2/3", "3/3"]);
    assert.deepEqual(RecordingExecutor.asked, [true, true]);
  });
});
