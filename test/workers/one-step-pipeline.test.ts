/**
 * A pipeline without the step-level interface runs through the worker's one StepLoop (as a one-step
 * pipeline, src/workers/one-step-pipeline.ts), not a second generation path: it gets the loop's guarantees.
 * The fake pipeline here holds its first generate on a latch the test opens, so nothing races the clock.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DiffusionOutput, type GeneratedImage } from "../../src/core/output.js";
import { OmniDiffusionRequest } from "../../src/core/request.js";
import { AbortedError } from "../../src/errors/omni-error.js";
import type { DiffusionPipeline, PipelineInfo } from "../../src/pipelines/types.js";
import { DiffusionWorker } from "../../src/workers/diffusion-worker.js";

const INFO: PipelineInfo = {
  modelDir: "plain",
  className: "PlainPipeline",
  components: [],
  width: 8,
  height: 8,
  sizeMultiple: 8,
  defaults: { numInferenceSteps: 4, guidanceScale: 1, scheduler: "fake" },
  asleep: false,
};

const image = (r: OmniDiffusionRequest): GeneratedImage => ({ requestId: r.requestId, index: 0, seed: 1, width: 8, height: 8, data: new Uint8Array(8 * 8 * 3) });
const req = (id: string) => new OmniDiffusionRequest({ requestId: id, prompt: "a red circle on a blue background", numInferenceSteps: 4 });

/**
 * A third-party pipeline's shape (only `generate`) that ignores `isAborted` and `signal`: whatever reaches
 * its generate runs to the end. Its first call waits until `release()`.
 */
function plainPipeline() {
  const calls: string[][] = [];
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let entered!: () => void;
  const inFirst = new Promise<void>((r) => (entered = r));
  const pipeline: DiffusionPipeline = {
    info: INFO,
    validate: () => {},
    release: async () => {},
    reload: async () => {},
    generate: async (requests) => {
      calls.push(requests.map((r) => r.requestId));
      if (calls.length === 1) {
        entered();
        await released;
      }
      return new DiffusionOutput({ output: requests.map(image) });
    },
  };
  return { pipeline, calls, release, inFirst };
}

describe("a pipeline without steps runs through the step loop", () => {
  it("a request aborted while it waits for its turn never reaches the pipeline's generate", async () => {
    const { pipeline, calls, release, inFirst } = plainPipeline();
    const worker = new DiffusionWorker(pipeline, { rank: 0, batching: "continuous" });
    const first = worker.generateOutput([req("A")]);
    await inFirst;
    const second = worker.generateOutput([req("B")]);
    assert.equal(worker.abort("B"), true, "B is in flight on the worker (waiting its turn)");
    release();
    const [a, b] = await Promise.all([first, second]);
    assert.equal(a.imagesFor("A").length, 1);
    assert.ok(b.errors.B instanceof AbortedError, `B: AbortedError, got ${String(b.errors.B)}`);
    assert.deepEqual(calls, [["A"]], "the step loop dropped B before its step: generate never saw it");
    assert.equal(worker.getStats().inFlight, 0);
    await worker.close();
  });

  it("getStats counts the requests waiting behind a running generate", async () => {
    const { pipeline, release, inFirst } = plainPipeline();
    const worker = new DiffusionWorker(pipeline, { rank: 0 });
    const first = worker.generateOutput([req("C")]);
    await inFirst;
    const second = worker.generateOutput([req("D")]);
    const stats = worker.getStats();
    assert.equal(stats.active, 1, "C is being generated");
    assert.equal(stats.waiting, 1, "D waits for its turn");
    assert.equal(stats.loop, null, "no UNet calls to count for a pipeline without steps");
    assert.equal(stats.batching, "request");
    release();
    await Promise.all([first, second]);
    await worker.close();
  });
});
