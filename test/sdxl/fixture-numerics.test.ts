/**
 * The SDXL fixtures, run through the TS pipeline, land on the latents and images diffusers' StableDiffusionXLPipeline
 * loop computed in torch on the same modules: both tokenizers (end-token vs "!" padding), the concatenated
 * penultimate hidden states, the pooled `text_embeds`, `time_ids` from the size fields, force_zeros_for_empty_prompt,
 * prompt_2, Euler (leading) and Euler ancestral (trailing, Turbo), float16 boundaries, the 0.13025 VAE scaling, and
 * the base → refiner handoff (denoising_end / denoising_start; the refiner's one encoder and 5 time ids with the
 * aesthetic scores).
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { OmniDiffusionRequest } from "../../src/core/request.js";
import { loadPipeline } from "../../src/pipelines/load.js";
import type { DiffusionPipeline } from "../../src/pipelines/types.js";
import { assertLatentsClose, assertPixelsClose, subsample } from "../models/fixtures.js";
import { SDXL_LAYOUTS, sdxlDir, sdxlExpected, type SdxlLayout } from "./fixtures.js";

// As the SD 1.5 fixtures: fp16 boundaries may flip a half-precision rounding between onnxruntime and torch.
const LATENT_REL: Record<SdxlLayout, number> = { sdxl: 1e-4, "sdxl-fp16": 5e-3, "sdxl-turbo": 1e-4, "sdxl-refiner": 1e-4, "sdxl-ensemble": 1e-4 };

describe("SDXL fixtures match the torch reference", () => {
  const pipelines: DiffusionPipeline[] = [];
  after(async () => {
    for (const p of pipelines) await p.release();
  });

  for (const layout of SDXL_LAYOUTS.filter((l) => sdxlExpected.layouts[l].cases.length)) {
    it(`${layout}: every reference request`, async () => {
      const pipeline = await loadPipeline(sdxlDir(layout), { intraOpNumThreads: 1 });
      pipelines.push(pipeline);
      for (const c of sdxlExpected.layouts[layout].cases) {
        const req = new OmniDiffusionRequest({ ...c.request, requestId: `${layout}-${c.name}`, returnTrajectoryLatents: true });
        const out = await pipeline.generate([req]);
        assert.deepEqual(Object.keys(out.errors), [], `${layout}/${c.name}: ${Object.values(out.errors)[0]?.message}`);
        const traj = out.trajectoryLatents![0]!;
        const n = c.latents.length;
        const size = c.latentShape[0] * c.latentShape[1] * c.latentShape[2];
        const last = traj.data.subarray(traj.data.length - n * size);
        for (let k = 0; k < n; k++) {
          const msg = `${layout}/${c.name} image ${k}`;
          assertLatentsClose(last.subarray(k * size, (k + 1) * size), c.latents[k]!, LATENT_REL[layout], msg);
          const img = out.imagesFor(req.requestId)[k]!;
          assert.deepEqual([img.width, img.height], [c.request.width, c.request.height], `${msg}: size`);
          assertPixelsClose(subsample(img, c.image.stride), c.image.pixels[k]!, 2, msg, 3);
        }
      }
    });
  }
});
