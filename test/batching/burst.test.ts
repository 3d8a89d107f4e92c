/**
 * Requests dispatched together start together: under continuous batching the engine sends each request on
 * its own call, and the worker process must still see them as one burst (the parent writes the messages of
 * one event-loop turn as one), so they share every UNet call instead of the first running a step ahead.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { OmniDiffusionRequest } from "../../src/core/request.js";
import { DiffusionEngine } from "../../src/engine/engine.js";
import { MODEL_DIR } from "../helpers/model.js";

interface LoopStats {
  unetCalls: number;
  unetRows: number;
}

describe("a burst of requests denoises in lockstep across the process boundary", { timeout: 120_000 }, () => {
  let engine: DiffusionEngine;
  const loopStats = async (): Promise<LoopStats> => ((await engine.collectiveRpc("getStats")) as { loop: LoopStats }[])[0]!.loop;
  before(async () => {
    engine = await DiffusionEngine.create({ model: MODEL_DIR, numGpus: 1, intraOpNumThreads: 1, batching: "continuous" });
  });
  after(async () => {
    await engine?.close();
  });

  it("engine.step of 6 guided requests × 4 steps: 4 UNet calls of 12 rows", async () => {
    assert.equal(engine.batching, "continuous");
    const requests = Array.from({ length: 6 }, (_, i) => new OmniDiffusionRequest({ prompt: "a blue star on a yellow background", numInferenceSteps: 4, guidanceScale: 4, seed: i }));
    const before = await loopStats();
    const outs = await engine.step(requests);
    const after = await loopStats();
    assert.deepEqual(outs.map((o) => [o.error, o.images.length]), requests.map(() => [null, 1]));
    assert.deepEqual({ calls: after.unetCalls - before.unetCalls, rows: after.unetRows - before.unetRows }, { calls: 4, rows: 48 });
  });
});
