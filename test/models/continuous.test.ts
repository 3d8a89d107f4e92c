/**
 * The default `continuous` policy on real layouts: a reference request joins a worker's step loop while another
 * request is mid-way, and still lands on the torch reference. LCM's export takes one timestep per row, so the two
 * share UNet calls at different steps; SD 1.5's takes one per call (`[1]`), so they take turns in the same loop.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { OmniDiffusionRequest } from "../../src/core/request.js";
import { loadPipeline } from "../../src/pipelines/load.js";
import { DiffusionWorker } from "../../src/workers/diffusion-worker.js";
import { ProgressLog } from "../batching/helpers.js";
import { assertPixelsClose, expected, fixtureDir, subsample, type Layout } from "./fixtures.js";

describe("continuous batching on the layout fixtures", { timeout: 120_000 }, () => {
  for (const layout of ["lcm", "sd15"] as Layout[]) {
    it(`${layout}: a request joining a running loop gives the reference images`, async () => {
      const pipeline = await loadPipeline(fixtureDir(layout), { intraOpNumThreads: 1 });
      const worker = new DiffusionWorker(pipeline, { rank: 0, batching: "continuous", maxBatchRows: 16 });
      try {
        const c = expected.layouts[layout].cases[0]!;
        const log = new ProgressLog();
        const long = new OmniDiffusionRequest({ ...c.request, prompt: "a small house near the river", seed: 500, numInferenceSteps: 12, requestId: "long" });
        const ref = new OmniDiffusionRequest({ ...c.request, requestId: "ref" });
        const pLong = worker.generateOutput([long.toDict()], { onProgress: log.onProgress });
        await log.reached("long", 2);
        const pRef = worker.generateOutput([ref.toDict()], { onProgress: log.onProgress });
        const [outLong, outRef] = await Promise.all([pLong, pRef]);
        assert.deepEqual(outLong.errors, {});
        assert.deepEqual(outRef.errors, {});
        assert.ok(log.indexOf("ref", 1) < log.indexOf("long", 12), "the reference request ran while the long one was still going");
        if (layout === "lcm") {
          assert.ok(log.of("ref").some((e) => e.batch?.requests === 2), `per-row timesteps: shared UNet calls ${JSON.stringify(log.of("ref").map((e) => e.batch))}`);
        }
        outRef.imagesFor("ref").forEach((img, k) => assertPixelsClose(subsample(img, c.image.stride), c.image.pixels[k]!, 2, `${layout} (continuous) image ${k}`, 3));
      } finally {
        await worker.close();
      }
    });
  }
});
