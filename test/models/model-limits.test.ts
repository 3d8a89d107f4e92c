/** What each layout fixture can serve (ModelLimits), and the memory refusal on a real-layout estimate. */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { DiffusionEngine } from "../../src/engine/engine.js";
import { estimateRequestBytes } from "../../src/core/limits.js";
import type { ModelLimits } from "../../src/core/model-limits.js";
import { ValidationError } from "../../src/errors/omni-error.js";
import { loadPipeline } from "../../src/pipelines/load.js";
import { latentUnetRowElements } from "../../src/pipelines/model-limits.js";
import type { OnnxDiffusionPipeline } from "../../src/pipelines/onnx-diffusion-pipeline.js";
import { LAYOUTS, fixtureDir, type Layout } from "./fixtures.js";

describe("ModelLimits of the layout fixtures", () => {
  const limits = {} as Record<Layout, ModelLimits>;
  before(async () => {
    for (const layout of LAYOUTS) {
      const p = (await loadPipeline(fixtureDir(layout), { intraOpNumThreads: 1 })) as OnnxDiffusionPipeline;
      limits[layout] = p.describe();
      await p.release();
    }
  });

  it("native sizes, spatial kind and prediction types are the layouts'", () => {
    const row = (l: Layout) => [limits[l].nativeWidth, limits[l].nativeHeight, limits[l].spatial, limits[l].predictionType, limits[l].sizeMultiple];
    assert.deepEqual(row("sd15"), [512, 512, "dynamic", "epsilon", 64]);
    assert.deepEqual(row("sd15-fixed"), [512, 512, "fixed", "epsilon", 64]);
    assert.deepEqual(row("sd21"), [768, 768, "dynamic", "v_prediction", 64]);
    assert.deepEqual(row("sd-turbo"), [512, 512, "dynamic", "epsilon", 64]);
    assert.deepEqual(row("lcm"), [512, 512, "dynamic", "epsilon", 64]);
  });

  it("samplers: those fitting the prediction type (PNDM for SD 1.x's config, never flow matching)", () => {
    assert.ok(limits.sd15.schedulers.includes("pndm") && limits.sd15.schedulers.includes("ddim"));
    for (const l of LAYOUTS) assert.ok(!limits[l].schedulers.includes("flow_euler"), l);
    assert.ok(limits.sd21.schedulers.includes("pndm") && limits.sd21.schedulers.includes("euler_a"));
  });

  it("the memory estimate follows SD's UNet (attention at 64×64 latents dominates) and halves for fp16", () => {
    // SD 1.5 at 512²: ~147 M elements per row, ~590 MB in float32.
    assert.ok(Math.abs(limits.sd15.bytesPerRowAtNative / 4 - latentUnetRowElements({ block_out_channels: [320, 640, 1280, 1280], attention_head_dim: 8 }, 64, 64, 77)) < 1);
    assert.ok(limits.sd15.bytesPerRowAtNative > 500e6 && limits.sd15.bytesPerRowAtNative < 700e6, String(limits.sd15.bytesPerRowAtNative));
    assert.equal(limits["sd15-fp16"].bytesPerRowAtNative, limits.sd15.bytesPerRowAtNative / 2);
    // Four guided 512² images: eight rows, ~4.7 GB.
    assert.ok(estimateRequestBytes(limits.sd15, 512, 512, 8) > 4e9);
  });
});

describe("a request whose tensors would not fit is a 400 before any tensor is allocated", { timeout: 60_000 }, () => {
  let engine: DiffusionEngine;
  before(async () => {
    engine = await DiffusionEngine.create({ model: fixtureDir("sd15"), executorClass: "uniproc", intraOpNumThreads: 1, limits: { maxRequestBytes: 2 * 1024 ** 3 } });
  });
  after(() => engine.close());

  it("four guided 512² images on an SD 1.5 layout exceed a 2 GiB budget; one fits", async () => {
    await assert.rejects(
      engine.generate({ prompt: "a cat", width: 512, height: 512, numOutputsPerPrompt: 4, guidanceScale: 7.5, numInferenceSteps: 1, seed: 1 }),
      (e: unknown) => e instanceof ValidationError && e.statusCode === 400 && /maxRequestBytes/.test(e.message),
    );
    const out = await engine.generate({ prompt: "a cat", width: 512, height: 512, guidanceScale: 7.5, numInferenceSteps: 1, seed: 1 });
    assert.equal(out.images.length, 1);
  });
});
