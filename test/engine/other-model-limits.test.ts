/**
 * The engine's one limits check covers every model of a multi-model executor (issue 24, src/engine/model-limits-fetch.ts
 * `ModelLimitsBook`): a request for a model no worker has loaded yet is checked by the worker that loads it; once a
 * worker has described the model, the engine refuses a bad request for it at submit, before any batch runs. A real
 * worker process serves the shipped tiny-shapes (default) and the sd15 fixture (its sizes: multiples of 64).
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { DiffusionEngine } from "../../src/engine/engine.js";
import { ValidationError } from "../../src/errors/omni-error.js";
import { MODEL_DIR } from "../helpers/model.js";

const SD15 = fileURLToPath(new URL("../fixtures/models/sd15", import.meta.url));

describe("limits of a model other than the default", { timeout: 300_000 }, () => {
  let engine: DiffusionEngine;
  before(async () => {
    engine = await DiffusionEngine.create({ models: [MODEL_DIR, SD15], numGpus: 1, intraOpNumThreads: 1, allowNonNativeSizes: true });
  });
  after(() => engine?.close());

  // 96 is a multiple of tiny-shapes' 8 but not of sd15's 64: only sd15's own rules refuse it.
  const bad = () => engine.generate({ prompt: "a red circle on a blue background", model: "sd15", width: 96, height: 64, numInferenceSteps: 2 });
  const refused = (e: unknown) => e instanceof ValidationError && e.field === "width" && /64/.test(e.message);

  it("before sd15 is described the worker refuses it; once described, the engine refuses it at submit with the same words", async () => {
    assert.equal(engine.modelLimitsFor("sd15"), null);
    const ran = engine.stats.batchesRun;
    const workerError = await bad().then(() => assert.fail("a width of 96 ran on sd15"), (e: unknown) => e);
    assert.ok(refused(workerError), String(workerError));
    assert.equal(engine.stats.batchesRun, ran + 1, "the first refusal came from the worker, in a batch");
    // The worker loaded sd15 for that request; the engine asks the workers what it can serve after the batch.
    while (!engine.modelLimitsFor("sd15")) await new Promise((r) => setTimeout(r, 20));
    assert.equal(engine.modelLimitsFor("sd15")!.sizeMultiple, 64);
    const before = engine.stats.batchesRun;
    const engineError = await bad().then(() => assert.fail("a width of 96 ran on sd15"), (e: unknown) => e);
    assert.ok(refused(engineError), String(engineError));
    assert.equal((engineError as Error).message, (workerError as Error).message, "the same words from the engine as from the worker");
    assert.equal(engine.stats.batchesRun, before, "refused at submit: no batch ran");
    // A good request for sd15 still runs, and the default model keeps its own limits.
    const ok = await engine.generate({ prompt: "a red circle on a blue background", model: "sd15", width: 64, height: 64, numInferenceSteps: 2 });
    assert.equal(ok.images.length, 1);
    assert.equal(engine.modelLimitsFor(null)!.sizeMultiple, 8);
  });
});
