/**
 * An SDXL model and an SD 1.5-layout model on one multi-process engine (issue 25 with issue 24's model cache):
 * requests for both at once each get the image they get alone (the SDXL one still the torch reference's). A UNet
 * call holds one weights key only (test/models-registry/worker-cache.test.ts proves it on the step log).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { OmniDiffusionRequest } from "../../src/core/request.js";
import { DiffusionEngine } from "../../src/engine/engine.js";
import { assertPixelsClose, subsample } from "../models/fixtures.js";
import { sdxlDir, sdxlExpected } from "./fixtures.js";

const SD15 = fileURLToPath(new URL("../fixtures/models/sd15", import.meta.url));

describe("SDXL beside SD 1.5 on one engine", { timeout: 600_000 }, () => {
  it("requests for both at once keep their own images, and their UNet calls never mix", async () => {
    const engine = await DiffusionEngine.create({ models: [sdxlDir("sdxl"), SD15], numGpus: 2, intraOpNumThreads: 1, batching: "continuous", allowNonNativeSizes: true });
    try {
      const c = sdxlExpected.layouts.sdxl.cases[0]!;
      const xl = (id: string, seed: number) => new OmniDiffusionRequest({ ...c.request, seed, model: "sdxl", requestId: id });
      const sd = (id: string, seed: number) => new OmniDiffusionRequest({ prompt: "a red circle on a blue background", width: 64, height: 64, numInferenceSteps: 3, seed, model: "sd15", requestId: id });
      const bytes = async (r: OmniDiffusionRequest) => {
        const out = await engine.generate(r);
        return out.images.map((img) => Buffer.from(img.data).toString("base64"));
      };
      const alone = { xl: await bytes(xl("xl-alone", c.request.seed as number)), sd: await bytes(sd("sd-alone", 7)) };
      const reqs = [xl("xl-1", c.request.seed as number), sd("sd-1", 7), xl("xl-2", c.request.seed as number), sd("sd-2", 7)];
      const mixed = await Promise.all(reqs.map((r) => bytes(r)));
      assert.deepEqual(mixed, [alone.xl, alone.sd, alone.xl, alone.sd]);
      const out = await engine.generate(xl("xl-ref", c.request.seed as number));
      out.images.forEach((img, k) => assertPixelsClose(subsample(img, c.image.stride), c.image.pixels[k]!, 2, `sdxl image ${k}`, 3));
    } finally {
      await engine.close();
    }
  });
});
