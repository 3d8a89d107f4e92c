/**
 * The tiny-VAE layout (diffusers' AutoencoderTiny as Optimum exports it: vae_decoder/ and vae_encoder/ with
 * `latent_sample` / `sample`) on a small fixture written by training/fixtures/make_tiny_vae_fixture.py, against
 * the torch reference it computed; then the same folder as an SD 1.5 model's `tiny_vae/`: previews (at most
 * 192 px), `vae: "tiny"` finals and img2img encodes go through it.
 */
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { OmniDiffusionRequest } from "../../src/core/request.js";
import { rgbToChw } from "../../src/pipelines/init-image.js";
import { loadPipeline } from "../../src/pipelines/load.js";
import { floatData, floatTensor } from "../../src/pipelines/onnx-model.js";
import { chwToRgb } from "../../src/pipelines/tensor-ops.js";
import { TinyVae } from "../../src/pipelines/tiny-vae.js";
import type { StepProgress, SteppablePipeline } from "../../src/pipelines/types.js";
import { float32FromBase64 } from "../models/fixtures.js";

const MODELS = join(import.meta.dirname, "..", "fixtures", "models");
const TINY = join(MODELS, "tiny-vae");

interface Tensor {
  shape: number[];
  b64: string;
}
interface Expected {
  decoder: { name: string; latents: Tensor; sample: Tensor & { stride: number; keptShape: number[] } }[];
  encoder: { name: string; image: Tensor; latent_sample: Tensor }[];
}
const expected = JSON.parse(readFileSync(join(TINY, "expected.json"), "utf8")) as Expected;

/** Largest |a - b| over the reference's largest magnitude. */
function relErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let err = 0;
  let scale = 1e-6;
  for (let i = 0; i < want.length; i++) {
    err = Math.max(err, Math.abs(got[i]! - want[i]!));
    scale = Math.max(scale, Math.abs(want[i]!));
  }
  return err / scale;
}

/** Every `stride`-th pixel of a [B, C, H, W] tensor in both directions. */
function strided(data: Float32Array, [b, c, h, w]: number[], stride: number): Float32Array {
  const out: number[] = [];
  for (let n = 0; n < b!; n++) for (let k = 0; k < c!; k++) for (let y = 0; y < h!; y += stride) for (let x = 0; x < w!; x += stride) out.push(data[((n * c! + k) * h! + y) * w! + x]!);
  return Float32Array.from(out);
}

describe("tiny VAE layout (AutoencoderTiny ONNX) against torch", () => {
  let vae: TinyVae;
  before(async () => {
    vae = new TinyVae(TINY, { intraOpNumThreads: 1 });
    await Promise.all(vae.models.map((m) => m.load()));
  });
  after(async () => {
    await Promise.all(vae?.models.map((m) => m.release()) ?? []);
  });

  it("reads the folder: decoder, encoder and scaling factor 1.0 from vae_decoder/config.json", () => {
    assert.ok(vae.encoder);
    assert.equal(vae.scalingFactor, 1);
    assert.deepEqual(vae.decoder.inputs.map((i) => i.name), ["latent_sample"]);
  });

  for (const c of expected.decoder) {
    it(`decoder ${c.name}: [-1, 1] pixels within 1e-4 of torch`, async () => {
      const input = vae.decoder.inputs[0]!;
      const out = await vae.decoder.run({ [input.name]: floatTensor(input.type, float32FromBase64(c.latents.b64), c.latents.shape) });
      const img = out[vae.decoder.outputs[0]!.name]!;
      assert.deepEqual(img.dims, c.sample.shape);
      const err = relErr(strided(floatData(img), c.sample.shape, c.sample.stride), float32FromBase64(c.sample.b64));
      assert.ok(err < 1e-4, `relative error ${err}`);
    });
  }

  for (const c of expected.encoder) {
    it(`encoder ${c.name}: latents within 1e-4 of torch, from the image as the pipeline feeds it`, async () => {
      const [h, w] = c.image.shape;
      const image = { width: w!, height: h!, data: new Uint8Array(Buffer.from(c.image.b64, "base64")) };
      const enc = vae.encoder!;
      const out = await enc.run({ [enc.inputs[0]!.name]: floatTensor(enc.inputs[0]!.type, rgbToChw(image), [1, 3, h!, w!]) });
      const lat = out[enc.outputs[0]!.name]!;
      assert.deepEqual(lat.dims, c.latent_sample.shape);
      const err = relErr(floatData(lat), float32FromBase64(c.latent_sample.b64));
      assert.ok(err < 1e-4, `relative error ${err}`);
    });
  }
});

describe("an SD 1.5 model with a tiny_vae/ folder", { timeout: 300_000 }, () => {
  let dir: string;
  let pipe: SteppablePipeline;
  let tiny: TinyVae;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "omni-sd15-tiny-vae-"));
    cpSync(join(MODELS, "sd15"), dir, { recursive: true });
    cpSync(TINY, join(dir, "tiny_vae"), { recursive: true });
    pipe = (await loadPipeline(dir, { intraOpNumThreads: 1 })) as SteppablePipeline;
    tiny = new TinyVae(TINY, { intraOpNumThreads: 1 });
  });
  after(async () => {
    await pipe?.release();
    await Promise.all(tiny?.models.map((m) => m.release()) ?? []);
    rmSync(dir, { recursive: true, force: true });
  });

  it("is found without a flag and decodes previews, at most 192 px on a side", async () => {
    assert.equal(pipe.info.previews, "tiny");
    assert.equal(pipe.info.tinyVae, join(dir, "tiny_vae"));
    const seen: StepProgress[] = [];
    const out = await pipe.generate([new OmniDiffusionRequest({ prompt: "a red square", width: 512, height: 256, numInferenceSteps: 3, guidanceScale: 1, seed: 2 })], {
      previewEvery: 1,
      onProgress: (p) => seen.push(p),
    });
    assert.deepEqual([out.output[0]!.width, out.output[0]!.height], [512, 256], "the final image is full size (full VAE)");
    const previews = seen.flatMap((p) => p.preview ?? []);
    assert.ok(previews.length >= 2);
    // 512 px over 192: latents averaged 3×3 (64×32 → 21×10 cells, the ragged edge dropped), ×8 by the tiny decoder.
    for (const p of previews) assert.deepEqual([p.width, p.height], [168, 80]);
  });

  it('vae: "tiny" decodes the final latents with the tiny decoder, byte for byte', async () => {
    const request = new OmniDiffusionRequest({ prompt: "a red square", width: 64, height: 64, numInferenceSteps: 2, guidanceScale: 1, seed: 9, vae: "tiny", returnTrajectoryLatents: true });
    const out = await pipe.generate([request]);
    const img = out.output[0]!;
    const traj = out.trajectoryLatents!.find((t) => t.requestId === request.requestId)!;
    const last = traj.data.subarray(traj.data.length - 4 * 8 * 8);
    const decoded = await tiny.decoder.run({ latent_sample: floatTensor("float32", Float32Array.from(last), [1, 4, 8, 8]) });
    const want = chwToRgb(floatData(decoded[tiny.decoder.outputs[0]!.name]!), 0, 64, 64);
    assert.deepEqual([img.width, img.height], [64, 64]);
    assert.deepEqual(Buffer.from(img.data), Buffer.from(want.data));
  });

  it('img2img with vae: "tiny" starts from the tiny encoder\'s latents (scaling factor 1)', async () => {
    const image = { width: 64, height: 64, data: Uint8Array.from({ length: 64 * 64 * 3 }, (_, i) => (i * 37) % 256) };
    const [state] = await pipe.prepare([new OmniDiffusionRequest({ prompt: "x", image, strength: 0.5, numInferenceSteps: 4, seed: 1, vae: "tiny" })]);
    const enc = tiny.encoder!;
    const out = await enc.run({ sample: floatTensor("float32", rgbToChw(image), [1, 3, 64, 64]) });
    assert.ok(relErr(state!.edit!.init, floatData(out[enc.outputs[0]!.name]!)) < 1e-6);
  });
});
