/**
 * Cheap previews: the linear latent → RGB approximation (its size and range, its factors), which previews a
 * latent model without a tiny VAE takes by default; the full VAE only when asked; pixel-space models keep
 * their own decoder; `vae: "tiny"` without a tiny VAE is a ValidationError naming the field.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { OmniDiffusionRequest } from "../../src/core/request.js";
import { ModelLoadError, ValidationError } from "../../src/errors/omni-error.js";
import { SD_LATENT_RGB_FACTORS, approximateRgb, poolLatents } from "../../src/pipelines/latent-preview.js";
import { loadPipeline } from "../../src/pipelines/load.js";
import type { StepProgress, SteppablePipeline } from "../../src/pipelines/types.js";

const SD15 = join(import.meta.dirname, "..", "fixtures", "models", "sd15");

describe("the latent approximation", () => {
  it("maps each latent cell to one RGB pixel with the SD factors, clamped to 0..255", () => {
    const [h, w] = [2, 3];
    const plane = h * w;
    const lat = new Float32Array(4 * plane);
    lat[0] = 1; // channel 0 at pixel 0
    lat[3 * plane + 1] = 1; // channel 3 at pixel 1
    for (let c = 0; c < 4; c++) lat[c * plane + 2] = 100; // saturates
    for (let c = 0; c < 4; c++) lat[c * plane + 3] = -100;
    const img = approximateRgb(lat, 0, w, h);
    assert.deepEqual([img.width, img.height, img.data.length], [w, h, plane * 3]);
    const byte = (v: number) => Math.round((v / 2 + 0.5) * 255);
    assert.deepEqual([...img.data.subarray(0, 3)], SD_LATENT_RGB_FACTORS[0]!.map(byte));
    assert.deepEqual([...img.data.subarray(3, 6)], SD_LATENT_RGB_FACTORS[3]!.map(byte));
    // Column sums decide saturation: R and G sum positive, B ~0.07 positive too.
    assert.deepEqual([...img.data.subarray(6, 9)], [255, 255, 255]);
    assert.deepEqual([...img.data.subarray(9, 12)], [0, 0, 0]);
    assert.deepEqual([...img.data.subarray(12)], [128, 128, 128, 128, 128, 128], "zero latents are mid-grey");
  });

  it("reads one sample from an offset", () => {
    const lat = new Float32Array(2 * 4);
    lat[4] = 1; // second sample (4 channels × 1 cell), channel 0
    assert.deepEqual([...approximateRgb(lat, 4, 1, 1).data], SD_LATENT_RGB_FACTORS[0]!.map((v) => Math.round((v / 2 + 0.5) * 255)));
  });

  it("pooling averages f×f cells per channel", () => {
    const lat = Float32Array.from({ length: 2 * 4 * 4 }, (_, i) => i);
    const pooled = poolLatents(lat, 2, 4, 4, 2);
    assert.deepEqual([...pooled], [2.5, 4.5, 10.5, 12.5, 18.5, 20.5, 26.5, 28.5]);
    assert.equal(poolLatents(lat, 2, 4, 4, 1), lat);
  });
});

describe("previews on a latent model without a tiny VAE (SD 1.5 layout)", { timeout: 300_000 }, () => {
  let auto: SteppablePipeline;
  before(async () => {
    auto = (await loadPipeline(SD15, { intraOpNumThreads: 1 })) as SteppablePipeline;
  });
  after(async () => {
    await auto?.release();
  });

  const previewsOf = async (p: SteppablePipeline, width = 128, height = 64) => {
    const seen: StepProgress[] = [];
    const out = await p.generate([new OmniDiffusionRequest({ prompt: "a blue circle", width, height, numInferenceSteps: 3, guidanceScale: 1, seed: 3 })], {
      previewEvery: 1,
      onProgress: (e) => seen.push(e),
    });
    return { out, previews: seen.flatMap((e) => e.preview ?? []) };
  };

  it("decode with the approximation by default: one pixel per latent cell (1/8 of the side), no VAE call", async () => {
    assert.equal(auto.info.previews, "approx");
    assert.equal(auto.info.tinyVae, null);
    const { out, previews } = await previewsOf(auto);
    assert.deepEqual([out.output[0]!.width, out.output[0]!.height], [128, 64]);
    assert.ok(previews.length >= 2, `a preview per step before the last, got ${previews.length}`);
    for (const p of previews) assert.deepEqual([p.width, p.height], [16, 8]);
    assert.ok(previews.some((p) => new Set(p.data).size > 1), "a preview is not one flat colour");
  });

  it("the full VAE only when asked (previewDecoder: full): full-size previews", async () => {
    const full = (await loadPipeline(SD15, { intraOpNumThreads: 1, previewDecoder: "full" })) as SteppablePipeline;
    try {
      assert.equal(full.info.previews, "full");
      const { previews } = await previewsOf(full);
      for (const p of previews) assert.deepEqual([p.width, p.height], [128, 64]);
    } finally {
      await full.release();
    }
  });

  it('vae: "tiny" without a tiny VAE is a ValidationError on the vae field saying how to add one', () => {
    assert.throws(
      () => auto.validate(new OmniDiffusionRequest({ prompt: "x", width: 64, height: 64, vae: "tiny" })),
      (e: unknown) => e instanceof ValidationError && e.field === "vae" && /tiny_vae\/.*--preview-vae/.test(e.message),
    );
    assert.doesNotThrow(() => auto.validate(new OmniDiffusionRequest({ prompt: "x", width: 64, height: 64, vae: "full" })));
  });

  it("previewDecoder tiny without a tiny VAE, or a missing --preview-vae folder, fails the load naming it", async () => {
    await assert.rejects(loadPipeline(SD15, { previewDecoder: "tiny" }), (e: unknown) => e instanceof ModelLoadError && /needs a tiny VAE/.test(e.message));
    await assert.rejects(loadPipeline(SD15, { tinyVae: "/nonexistent/tiny" }), (e: unknown) => e instanceof ModelLoadError && /tiny VAE folder not found: \/nonexistent\/tiny/.test(e.message));
  });
});

describe("previews on a pixel-space model (tiny-shapes)", { timeout: 120_000 }, () => {
  it("keep the model's own decoder (cheap in pixel space), and refuse the approximation", async () => {
    const p = (await loadPipeline("tiny-shapes", { intraOpNumThreads: 1 })) as SteppablePipeline;
    try {
      assert.equal(p.info.previews, "full");
    } finally {
      await p.release();
    }
    await assert.rejects(loadPipeline("tiny-shapes", { previewDecoder: "approx" }), (e: unknown) => e instanceof ModelLoadError && /pixel space/.test(e.message));
  });
});
