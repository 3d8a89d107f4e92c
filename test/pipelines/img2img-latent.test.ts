/**
 * img2img and inpainting on a latent model (the SD 1.5 layout fixture) with a VAE encoder: the fixture has none,
 * so a copy gets a tiny hand-written ONNX encoder (tiny-vae-encoder.ts). The start latents are the encoder's mean
 * half × scaling factor, noised by the sampler; strength 1 is text-to-image; inpainting keeps the unmasked pixels.
 */
import assert from "node:assert/strict";
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { OmniDiffusionRequest, type OmniDiffusionRequestInit } from "../../src/core/request.js";
import { rgbToChw } from "../../src/pipelines/init-image.js";
import { loadPipeline } from "../../src/pipelines/load.js";
import { SeededNormal } from "../../src/pipelines/random.js";
import type { SteppablePipeline } from "../../src/pipelines/types.js";
import type { MaskImage, RgbImage } from "../../src/utils/png.js";
import { identical } from "../batching/helpers.js";
import { expectedMean, tinyVaeEncoderOnnx } from "./tiny-vae-encoder.js";

const SD15 = join(import.meta.dirname, "..", "fixtures", "models", "sd15");
const SCALING = 0.18215;

/** A 64×64 test card: horizontal red ramp, vertical green ramp, blue checks. */
function card(): RgbImage {
  const data = new Uint8Array(64 * 64 * 3);
  for (let y = 0; y < 64; y++) for (let x = 0; x < 64; x++) data.set([x * 4, y * 4, ((x >> 3) + (y >> 3)) % 2 ? 220 : 30], (y * 64 + x) * 3);
  return { width: 64, height: 64, data };
}

describe("edits on a latent model with a VAE encoder", { timeout: 300_000 }, () => {
  let dir: string;
  let pipe: SteppablePipeline;
  const req = (o: Partial<OmniDiffusionRequestInit> = {}) => new OmniDiffusionRequest({ prompt: "a photo of a cat", seed: 4, numInferenceSteps: 4, width: 64, height: 64, ...o });
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "omni-sd15-encoder-"));
    cpSync(SD15, dir, { recursive: true });
    mkdirSync(join(dir, "vae_encoder"));
    writeFileSync(join(dir, "vae_encoder", "model.onnx"), tinyVaeEncoderOnnx());
    pipe = (await loadPipeline(dir, { intraOpNumThreads: 1 })) as SteppablePipeline;
  });
  after(async () => {
    await pipe?.release();
    rmSync(dir, { recursive: true, force: true });
  });

  it("loads the encoder as a component", () => {
    assert.ok(pipe.info.components.includes("vae_encoder"), pipe.info.components.join(", "));
  });

  it("the start latents are the encoder's mean × scaling factor, noised to the first timestep that runs", async () => {
    const image = card();
    for (const scheduler of ["pndm", "euler_a", "dpmpp_2m"]) {
      const [state] = await pipe.prepare([req({ image, strength: 0.5, scheduler })]);
      const s = state!;
      assert.equal(s.timesteps.length, scheduler === "pndm" ? 3 : 2, `${scheduler}: floor(4 × 0.5) steps (PLMS's repeat kept)`);
      const mean = expectedMean(rgbToChw(image), 64, 64);
      const init = Float32Array.from(mean, (v) => v * SCALING);
      for (let i = 0; i < init.length; i++) assert.ok(Math.abs(s.edit!.init[i]! - init[i]!) < 1e-5, `${scheduler}: init[${i}] ${s.edit!.init[i]} vs ${init[i]}`);
      const noise = new SeededNormal(4).randn(new Float32Array(init.length));
      const want = s.samples[0]!.scheduler.addNoise!(init, noise, s.timesteps[0]!);
      for (let i = 0; i < want.length; i++) assert.ok(Math.abs(s.samples[0]!.latents[i]! - want[i]!) < 1e-4, `${scheduler}: start[${i}]`);
    }
  });

  it("strength 1 equals text-to-image; a lower strength depends on the image", async () => {
    const t2i = (await pipe.generate([req()])).output[0]!;
    const edit = (await pipe.generate([req({ image: card(), strength: 1 })])).output[0]!;
    assert.ok(identical(edit, t2i));
    const a = (await pipe.generate([req({ image: card(), strength: 0.5 })])).output[0]!;
    const b = (await pipe.generate([req({ image: { ...card(), data: card().data.map((v) => 255 - v) }, strength: 0.5 })])).output[0]!;
    assert.ok(!identical(a, b), "another init image, another result");
  });

  it("inpainting keeps every unmasked pixel; the mask is averaged onto the 8×8 latent grid", async () => {
    const image = card();
    // Repaint a 20×20 square that straddles latent cells: those cells are partly repainted.
    const mask: MaskImage = { width: 64, height: 64, data: Uint8Array.from({ length: 4096 }, (_, p) => ((p % 64) >= 20 && (p % 64) < 40 && p >> 6 >= 20 && p >> 6 < 40 ? 255 : 0)) };
    const [state] = await pipe.prepare([req({ image, mask })]);
    const m = state!.edit!.latentMask!;
    assert.equal(m.length, 64);
    assert.equal(m[3 * 8 + 3], 1, "a cell inside the square is fully repainted");
    assert.equal(m[2 * 8 + 2], 16 / 64, "a corner cell: 4×4 of its 8×8 pixels");
    assert.equal(m[0], 0);
    const out = (await pipe.generate([req({ image, mask })])).output[0]!;
    for (let p = 0; p < 4096; p++) if (mask.data[p] === 0) for (let c = 0; c < 3; c++) assert.equal(out.data[p * 3 + c], image.data[p * 3 + c], `kept pixel ${p}`);
  });
});
