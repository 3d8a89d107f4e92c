/**
 * One request's failure stays its own. A request whose sampler throws mid-run (as `dpmpp_2m_karras` did with
 * "all steps are done") used to fail every request of the same size batched with it, each reported as a 400
 * naming the other request's field. Now the sampler's request alone fails, with an internal error (500), and
 * its neighbours' images are the ones they get when run without it — under continuous batching (the step
 * loop) and under request batching (run to completion), on a real worker and pipeline.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { GeneratedImage } from "../../src/core/output.js";
import { DEFAULT_MODEL_DIR } from "../../src/core/paths.js";
import { OmniDiffusionRequest } from "../../src/core/request.js";
import { ValidationError } from "../../src/errors/omni-error.js";
import type { DenoiseState } from "../../src/pipelines/denoise-state.js";
import { loadPipeline } from "../../src/pipelines/load.js";
import type { SteppablePipeline } from "../../src/pipelines/types.js";
import type { Scheduler } from "../../src/schedulers/types.js";
import { DiffusionWorker } from "../../src/workers/diffusion-worker.js";
import { pixelDiff } from "../batching/helpers.js";

/** Wraps a real sampler so that its `failAt`-th step throws the ValidationError a broken schedule threw. */
function throwingAt(inner: Scheduler, failAt: number): Scheduler {
  let steps = 0;
  return new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop !== "step") return Reflect.get(target, prop, receiver);
      return (...args: Parameters<Scheduler["step"]>) => {
        if (++steps === failAt) throw new ValidationError(`scheduler "${inner.name}": all steps are done; call setTimesteps() again`, { field: "timestep" });
        return target.step(...args);
      };
    },
  });
}

const dict = (id: string, prompt: string, seed: number) => new OmniDiffusionRequest({ requestId: id, prompt, seed, numInferenceSteps: 6, width: 32, height: 32 }).toDict();

describe("a step that throws fails only its own request", { timeout: 120_000 }, () => {
  let pipeline: SteppablePipeline;
  before(async () => {
    pipeline = (await loadPipeline(DEFAULT_MODEL_DIR, { intraOpNumThreads: 1 })) as SteppablePipeline;
    // Requests whose prompt says "boom" get a sampler that throws at their third step.
    const prepare = pipeline.prepare.bind(pipeline);
    pipeline.prepare = async (requests, params): Promise<DenoiseState[]> => {
      const states = await prepare(requests, params);
      for (const s of states) if (s.request.prompt.includes("boom")) s.samples[0]!.scheduler = throwingAt(s.samples[0]!.scheduler, 3);
      return states;
    };
  });
  after(() => pipeline.release());

  for (const batching of ["continuous", "request"] as const) {
    it(`under ${batching} batching`, async () => {
      const worker = new DiffusionWorker(pipeline, { rank: 0, batching });
      const good = [dict(`a-${batching}`, "a red circle on a blue background", 1), dict(`b-${batching}`, "a green star on a white background", 2)];
      const alone = await worker.generateOutput(good);
      const out = await worker.generateOutput([good[0], dict(`boom-${batching}`, "a boom square on a black background", 3), good[1]]);

      const err = out.errors[`boom-${batching}`];
      assert.ok(err, "the throwing request failed");
      assert.ok(!(err instanceof ValidationError), `an internal failure, not the client's 400: ${err.name}`);
      assert.equal(err.code, "OMNI_ERR_INTERNAL");
      assert.equal(err.statusCode, 500);
      assert.match(err.message, /failed at step 3 of 6 .*all steps are done/);
      assert.equal(out.imagesFor(`boom-${batching}`).length, 0);
      for (const d of good) {
        assert.equal(out.errors[d.request_id], undefined, `${d.request_id} was not failed by its neighbour`);
        const [img] = out.imagesFor(d.request_id) as GeneratedImage[];
        const [ref] = alone.imagesFor(d.request_id) as GeneratedImage[];
        assert.ok(img && ref, `${d.request_id} has its image`);
        assert.ok(pixelDiff(img, ref) <= 2, `${d.request_id}: the same image as without the failing neighbour (diff ${pixelDiff(img, ref)})`);
      }
    });
  }
});
