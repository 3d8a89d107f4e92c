/**
 * img2img and inpainting on the real tiny-shapes pipeline (pixel space): strength 1 is text-to-image, strength
 * cuts the schedule as diffusers does, a tiny strength gives the init image back, inpainting keeps the unmasked
 * pixels byte for byte, and edits batched with text-to-image requests in one step loop get the images they get alone.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { GeneratedImage } from "../../src/core/output.js";
import { OmniDiffusionRequest, type OmniDiffusionRequestInit } from "../../src/core/request.js";
import { ValidationError } from "../../src/errors/omni-error.js";
import { loadPipeline } from "../../src/pipelines/load.js";
import type { StepProgress, SteppablePipeline } from "../../src/pipelines/types.js";
import type { MaskImage, RgbImage } from "../../src/utils/png.js";
import { DiffusionWorker } from "../../src/workers/diffusion-worker.js";
import { identical, pixelDiff } from "../batching/helpers.js";
import { MODEL_DIR } from "../helpers/model.js";

const T = 120_000;
const PROMPT = "a red circle on a blue background";
const req = (o: Partial<OmniDiffusionRequestInit> = {}) => new OmniDiffusionRequest({ prompt: PROMPT, seed: 7, numInferenceSteps: 10, ...o });

/** Mean absolute per-channel difference. */
function meanDiff(a: RgbImage, b: RgbImage): number {
  let s = 0;
  for (let i = 0; i < a.data.length; i++) s += Math.abs(a.data[i]! - b.data[i]!);
  return s / a.data.length;
}

/** Left half repainted (255), right half kept (0); one soft column (128) in between. */
function halfMask(w: number, h: number): MaskImage {
  const data = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data[y * w + x] = x < w / 2 ? 255 : x === w / 2 ? 128 : 0;
  return { width: w, height: h, data };
}

describe("img2img and inpainting on tiny-shapes", { timeout: 10 * T }, () => {
  let pipe: SteppablePipeline;
  let star: GeneratedImage;
  const one = async (r: OmniDiffusionRequest, opts = {}) => {
    const out = await pipe.generate([r], opts);
    assert.deepEqual(out.errors, {});
    return out.output[0]!;
  };
  before(async () => {
    pipe = (await loadPipeline(MODEL_DIR, { intraOpNumThreads: 1 })) as SteppablePipeline;
    star = await one(req({ prompt: "a green star on a white background", seed: 3 }));
  });
  after(() => pipe.release());

  it("strength 1.0 equals text-to-image from the same seed, byte for byte, with every sampler", { timeout: T }, async () => {
    // pndm is not offered for tiny-shapes (PLMS on its cosine v-prediction schedule); img2img-latent.test.ts runs it on SD 1.5
    for (const scheduler of ["ddim", "euler", "euler_a", "dpmpp_2m", "dpmpp_2m_karras", "lcm"]) {
      const t2i = await one(req({ scheduler, numInferenceSteps: 4 }));
      const edit = await one(req({ scheduler, numInferenceSteps: 4, image: star, strength: 1 }));
      assert.ok(identical(edit, t2i), `${scheduler}: strength 1 is text-to-image`);
    }
  });

  it("runs floor(steps × strength) steps on the tail of the schedule (at least 1), default strength 0.8", { timeout: T }, async () => {
    const t2i = await pipe.generate([req({ returnTrajectoryTimesteps: true })]);
    const schedule = t2i.trajectoryTimesteps![0]!.timesteps;
    assert.equal(schedule.length, 10);
    for (const [strength, steps] of [[0.8, 8], [0.55, 5], [0.05, 1], [null, 8]] as const) {
      const progress: StepProgress[] = [];
      const r = req({ image: star, strength, returnTrajectoryTimesteps: true });
      const out = await pipe.generate([r], { onProgress: (p) => progress.push(p) });
      assert.equal(progress.length, steps, `strength ${strength}: ${steps} steps`);
      assert.ok(progress.every((p) => p.totalSteps === steps));
      const ts = out.trajectoryTimesteps![0]!.timesteps;
      assert.deepEqual(ts, schedule.slice(10 - steps), "the tail of the text-to-image schedule");
    }
  });

  it("a strength near 0 gives back about the init image; a higher one moves further from it", { timeout: T }, async () => {
    const own = await one(req({ numInferenceSteps: 20 }));
    const back = await one(req({ numInferenceSteps: 50, strength: 0.02, image: own }));
    assert.ok(meanDiff(back, own) < 8, `strength 0.02 keeps the image (mean diff ${meanDiff(back, own)})`);
    const diffs = [];
    for (const strength of [0.02, 0.3, 0.6, 0.9]) diffs.push(meanDiff(await one(req({ numInferenceSteps: 20, strength, image: star })), star));
    for (let i = 1; i < diffs.length; i++) assert.ok(diffs[i]! > diffs[i - 1]!, `more strength, further from the init image: ${diffs.join(", ")}`);
  });

  it("inpainting keeps every unmasked pixel byte-exact and repaints the masked half, with every kind of sampler", { timeout: T }, async () => {
    const mask = halfMask(32, 32);
    for (const [scheduler, strength] of [["ddim", null], ["euler_a", 0.7], ["dpmpp_2m", 1]] as const) {
      const img = await one(req({ scheduler, image: star, mask, strength }));
      let repainted = 0;
      for (let p = 0; p < mask.data.length; p++) {
        for (let c = 0; c < 3; c++) {
          const [g, s] = [img.data[p * 3 + c]!, star.data[p * 3 + c]!];
          if (mask.data[p] === 0) assert.equal(g, s, `${scheduler}: kept pixel ${p} channel ${c}`);
          if (mask.data[p] === 255 && g !== s) repainted++;
        }
      }
      assert.ok(repainted > 100, `${scheduler}: the masked half changed (${repainted} values)`);
    }
  });

  it("pixel space: the init sample decodes back to the init image exactly (encoding is decoding's inverse)", { timeout: T }, async () => {
    const [state] = await pipe.prepare([req({ image: star, strength: 0.5 })]);
    const s = state!;
    const [[back]] = await pipe.decode([{ ...s, samples: s.samples.map((smp) => ({ ...smp, latents: s.edit!.init })) }]);
    assert.ok(identical(back!, star));
  });

  it("several images per inpainting request each keep the unmasked pixels, each with its own noise", { timeout: T }, async () => {
    const mask = halfMask(32, 32);
    const out = await pipe.generate([req({ image: star, mask, numOutputsPerPrompt: 3 })]);
    assert.equal(out.output.length, 3);
    for (const img of out.output) for (let p = 0; p < mask.data.length; p++) if (mask.data[p] === 0) assert.equal(img.data[p * 3 + 1], star.data[p * 3 + 1], `image ${img.index}: kept pixel ${p}`);
    assert.ok(!identical(out.output[0]!, out.output[1]!), "seeds differ, so do the repainted halves");
  });

  it("the soft mask column is the rounded mix of the init and the generated pixel", { timeout: T }, async () => {
    // A mask of all 128 keeps nothing exactly: every value is round((init·127 + gen·128) / 255).
    const soft: MaskImage = { width: 32, height: 32, data: new Uint8Array(32 * 32).fill(128) };
    const states = await pipe.prepare([req({ image: star, mask: soft, numInferenceSteps: 3 })]);
    while (states[0]!.stepIndex < states[0]!.timesteps.length) await pipe.step(states);
    const [[pasted]] = await pipe.decode(states);
    const raw = await pipe.decode([{ ...states[0]!, edit: null }]);
    const gen = raw[0]![0]!;
    for (let i = 0; i < gen.data.length; i++) assert.equal(pasted!.data[i], Math.round((star.data[i]! * 127 + gen.data[i]! * 128) / 255));
  });

  it("edits batched with text-to-image requests in one step loop get the images they get alone", { timeout: T }, async () => {
    const worker = new DiffusionWorker(pipe, { rank: 0, batching: "continuous" });
    const mask = halfMask(32, 32);
    const dicts = [
      req({ requestId: "t2i", seed: 11 }).toDict(),
      req({ requestId: "img2img", seed: 12, image: star, strength: 0.6 }).toDict(),
      req({ requestId: "inpaint", seed: 13, image: star, mask, scheduler: "euler_a" }).toDict(),
      req({ requestId: "t2i-64", seed: 14, width: 64, height: 64 }).toDict(),
    ];
    const together = await worker.generateOutput(dicts);
    assert.deepEqual(together.errors, {});
    for (const d of dicts) {
      const alone = await worker.generateOutput([d]);
      const [a] = alone.imagesFor(d.request_id!);
      const [b] = together.imagesFor(d.request_id!);
      assert.ok(pixelDiff(a!, b!) <= 2, `${d.request_id}: same image batched (diff ${pixelDiff(a!, b!)})`);
    }
    const [inpainted] = together.imagesFor("inpaint");
    for (let p = 0; p < mask.data.length; p++) if (mask.data[p] === 0) assert.equal(inpainted!.data[p * 3], star.data[p * 3], `kept pixel ${p} in a batch`);
  });

  it("the size comes from the image when width/height are left out; a mismatch or a bad size names the field", { timeout: T }, async () => {
    const big = await one(req({ width: 48, height: 40, numInferenceSteps: 2 }));
    const edit = await one(req({ image: big, numInferenceSteps: 2 }));
    assert.deepEqual([edit.width, edit.height], [48, 40]);
    const fail = (r: OmniDiffusionRequest, field: string, re: RegExp) =>
      assert.throws(() => pipe.validate(r), (e: unknown) => e instanceof ValidationError && e.data.field === field && re.test(e.message));
    fail(req({ image: big, width: 32 }), "image", /image is 48x40 but the request asks for 32x40/);
    // The size rules are core/limits.ts's (the same function as the engine's check, in the same words).
    const odd = { width: 30, height: 32, data: new Uint8Array(30 * 32 * 3) };
    fail(req({ image: odd }), "width", /size 30x32 \(width\): width and height must be multiples of 8/);
    fail(req({ image: odd, width: 30 }), "width", /multiples of 8/);
  });

  it("a latent model without a vae_encoder refuses edits, naming the missing component", { timeout: T }, async () => {
    const sd = (await loadPipeline(join(import.meta.dirname, "..", "fixtures", "models", "sd15"), { intraOpNumThreads: 1 })) as SteppablePipeline;
    try {
      const image = { width: 64, height: 64, data: new Uint8Array(64 * 64 * 3) };
      assert.throws(
        () => sd.resolve(new OmniDiffusionRequest({ prompt: "a cat", width: 64, height: 64, image })),
        (e: unknown) => e instanceof ValidationError && e.data.field === "image" && /vae_encoder\/model\.onnx/.test(e.message),
      );
      sd.resolve(new OmniDiffusionRequest({ prompt: "a cat", width: 64, height: 64 })); // text-to-image still fine
    } finally {
      await sd.release();
    }
  });
});
