import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { OmniDiffusionRequest } from "../../src/core/request.js";
import { ValidationError } from "../../src/errors/omni-error.js";
import { loadPipeline } from "../../src/pipelines/load.js";
import { OnnxModel, ort } from "../../src/pipelines/onnx-model.js";
import { PromptEncoder } from "../../src/pipelines/prompt-encoder.js";
import type { DiffusionPipeline } from "../../src/pipelines/types.js";
import { MODEL_DIR } from "../helpers/model.js";

let pipe: DiffusionPipeline;
before(async () => {
  pipe = await loadPipeline(MODEL_DIR, { intraOpNumThreads: 1 });
});
after(async () => pipe.release());

const req = (o: Partial<ConstructorParameters<typeof OmniDiffusionRequest>[0]> = {}) =>
  new OmniDiffusionRequest({ prompt: "a red circle on a blue background", seed: 7, numInferenceSteps: 6, ...o });

test("onnxruntime matches the PyTorch reference exported with the model", async () => {
  const ref = JSON.parse(readFileSync(join(import.meta.dirname, "..", "fixtures", "tiny-shapes-reference.json"), "utf8"));
  const te = new OnnxModel("text_encoder", join(MODEL_DIR, "text_encoder", "model.onnx"), { intraOpNumThreads: 1 });
  await te.load();
  const enc = new PromptEncoder(MODEL_DIR, te);
  assert.deepEqual(enc.tokenize(ref.prompt), ref.input_ids, "tokenizer ids match Python's");
  const emb = await enc.encode([ref.prompt]);
  for (let i = 0; i < 8; i++) assert.ok(Math.abs(emb.data[i]! - ref.hidden_state_first8[i]) < 1e-4, `hidden[${i}]`);
  const unet = new OnnxModel("unet", join(MODEL_DIR, "unet", "model.onnx"), { intraOpNumThreads: 1 });
  const out = await unet.run({
    sample: new ort.Tensor("float32", Float32Array.from(ref.sample), [1, 3, 32, 32]),
    timestep: new ort.Tensor("float32", Float32Array.from([ref.timestep]), [1]),
    encoder_hidden_states: new ort.Tensor("float32", emb.data, [1, emb.tokens, emb.dim]),
  });
  const data = out.out_sample!.data as Float32Array;
  for (let i = 0; i < 16; i++) assert.ok(Math.abs(data[i]! - ref.out_sample_first16[i]) < 1e-3, `out[${i}] ${data[i]} vs ${ref.out_sample_first16[i]}`);
  await te.release();
  await unet.release();
});

test("an image of the requested size comes back, tagged with its request", async () => {
  for (const size of [32, 64]) {
    const r = req({ width: size, height: size, numInferenceSteps: 2 });
    const out = await pipe.generate([r]);
    assert.equal(out.output.length, 1);
    const img = out.output[0]!;
    assert.equal(img.requestId, r.requestId);
    assert.deepEqual([img.width, img.height, img.data.length], [size, size, size * size * 3]);
  }
});

test("the same request gives byte-identical images; another seed does not", async () => {
  const a = await pipe.generate([req({ requestId: "a" })]);
  const b = await pipe.generate([req({ requestId: "b" })]);
  const c = await pipe.generate([req({ requestId: "c", seed: 8 })]);
  assert.deepEqual(a.output[0]!.data, b.output[0]!.data);
  assert.notDeepEqual(a.output[0]!.data, c.output[0]!.data);
});

test("a batch of different prompts equals the same prompts run alone", async () => {
  const prompts = ["a red circle on a blue background", "a yellow star on a black background", "a white cross on a green background"];
  const batched = await pipe.generate(prompts.map((p, i) => req({ prompt: p, seed: 100 + i, requestId: `b${i}` })));
  for (const [i, p] of prompts.entries()) {
    const alone = await pipe.generate([req({ prompt: p, seed: 100 + i, requestId: `a${i}` })]);
    const x = batched.imagesFor(`b${i}`)[0]!.data;
    const y = alone.output[0]!.data;
    let maxDiff = 0;
    for (let k = 0; k < x.length; k++) maxDiff = Math.max(maxDiff, Math.abs(x[k]! - y[k]!));
    assert.ok(maxDiff <= 2, `prompt ${i}: max pixel difference ${maxDiff}`);
  }
});

test("numOutputsPerPrompt gives n images with seeds seed..seed+n-1, each equal to a single run with that seed", async () => {
  const out = await pipe.generate([req({ numOutputsPerPrompt: 3, requestId: "multi" })]);
  const imgs = out.imagesFor("multi");
  assert.deepEqual(imgs.map((i) => [i.index, i.seed]), [[0, 7], [1, 8], [2, 9]]);
  const single = await pipe.generate([req({ seed: 9 })]);
  let maxDiff = 0;
  for (let k = 0; k < single.output[0]!.data.length; k++) maxDiff = Math.max(maxDiff, Math.abs(single.output[0]!.data[k]! - imgs[2]!.data[k]!));
  assert.ok(maxDiff <= 2, `max pixel difference ${maxDiff}`);
});

test("no seed → a random one, reported in the output", async () => {
  const out = await pipe.generate([req({ seed: null, numInferenceSteps: 1 })]);
  assert.ok(Number.isInteger(out.output[0]!.seed));
});

test("trajectory latents and timesteps come back when asked", async () => {
  const r = req({ numInferenceSteps: 4, returnTrajectoryLatents: true, returnTrajectoryTimesteps: true });
  const out = await pipe.generate([r]);
  assert.deepEqual(out.trajectoryLatents![0]!.shape, [5, 1, 3, 32, 32]);
  assert.equal(out.trajectoryLatents![0]!.data.length, 5 * 3 * 32 * 32);
  assert.equal(out.trajectoryTimesteps![0]!.timesteps.length, 4);
});

test("every scheduler and guidance setting produces an image", async () => {
  for (const scheduler of ["ddim", "euler", "euler_karras", "euler_a", "dpmpp_2m", "dpmpp_2m_karras", "lcm"]) {
    for (const guidanceScale of [1, 4]) {
      const out = await pipe.generate([req({ scheduler, guidanceScale, numInferenceSteps: 4, negativePrompt: "a green square" })]);
      assert.equal(out.output.length, 1, `${scheduler} g=${guidanceScale}: ${JSON.stringify(out.errors)}`);
      assert.ok(out.output[0]!.data.some((v) => v > 0));
    }
  }
});

test("bad requests get field-level errors, and the good ones in the same batch still run", async () => {
  const good = req({ requestId: "good", numInferenceSteps: 2 });
  const badSize = req({ requestId: "bad-size", width: 33 });
  const badSched = req({ requestId: "bad-sched", scheduler: "nope" });
  const out = await pipe.generate([good, badSize, badSched]);
  assert.equal(out.imagesFor("good").length, 1);
  assert.ok(out.errors["bad-size"] instanceof ValidationError);
  assert.equal((out.errors["bad-size"] as ValidationError).field, "width");
  assert.match(out.errors["bad-size"]!.message, /width and height must be multiples of 8/);
  assert.match(out.errors["bad-sched"]!.message, /nope/);
});

test("progress reports every step, and an abort stops a request between steps", async () => {
  const seen: number[] = [];
  const keep = req({ requestId: "keep", numInferenceSteps: 5 });
  const stop = req({ requestId: "stop", numInferenceSteps: 5 });
  const out = await pipe.generate([keep, stop], {
    onProgress: (p) => p.requestId === "keep" && seen.push(p.step),
    isAborted: (id) => id === "stop" && seen.length >= 2,
  });
  assert.deepEqual(seen, [1, 2, 3, 4, 5]);
  assert.equal(out.imagesFor("keep").length, 1);
  assert.equal(out.errors["stop"]?.code, "OMNI_ERR_ABORTED");
});

test("the shipped model paints the requested colours (judged by the fidelity classifier)", async () => {
  const { classify } = await import("../../bench/lib/classify.js");
  const cases = [
    ["red", "circle", "blue"],
    ["yellow", "square", "black"],
    ["green", "cross", "white"],
  ] as const;
  const reqs = cases.map(([fg, shape, bg], i) => new OmniDiffusionRequest({ prompt: `a ${fg} ${shape} on a ${bg} background`, seed: 21 + i, requestId: `colour-${i}` }));
  const out = await pipe.generate(reqs);
  cases.forEach(([fg, , bg], i) => {
    const img = out.imagesFor(`colour-${i}`)[0]!;
    const got = classify(img.data, img.width);
    assert.equal(got.foreground, fg, `prompt ${reqs[i]!.prompt}: foreground ${got.foreground}`);
    assert.equal(got.background, bg, `prompt ${reqs[i]!.prompt}: background ${got.background}`);
  });
});
