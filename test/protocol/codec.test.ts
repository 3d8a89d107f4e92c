import assert from "node:assert/strict";
import { test } from "node:test";
import { DiffusionOutput, OmniDiffusionRequest, TimeoutError, ValidationError, parseConfig, ConfigError, newRequestId } from "../../src/index.js";
import { requestInitSchema } from "../../src/core/request.js";
import { requestFromProtoMessage, requestToProtoMessage } from "../../src/protocol/request-codec.js";
import { pngCounters, resetPngCounters } from "../../src/utils/png.js";

test("OmniDiffusionRequest round-trips through snake_case JSON", () => {
  const r = new OmniDiffusionRequest({ prompt: "a red circle", negativePrompt: "blue", width: 64, height: 32, numInferenceSteps: 7, guidanceScale: 3.5, seed: 11, numOutputsPerPrompt: 2, scheduler: "euler", returnTrajectoryLatents: true });
  const d = JSON.parse(JSON.stringify(r.toDict()));
  assert.equal(d.request_id, r.requestId);
  assert.equal(d.negative_prompt, "blue");
  assert.equal(d.num_inference_steps, 7);
  assert.equal(d.return_trajectory_latents, true);
  const back = OmniDiffusionRequest.fromDict(d);
  assert.deepEqual(back.toDict(), r.toDict());
});

test("fromDict rejects bad input with a field-level message", () => {
  const cases: [unknown, RegExp, string][] = [
    [{}, /prompt/, "prompt"],
    [{ prompt: 5 }, /prompt: .*string/, "prompt"],
    [{ prompt: "x", num_inference_steps: 0 }, /num_inference_steps/, "num_inference_steps"],
    [{ prompt: "x", width: -32 }, /width/, "width"],
    [{ prompt: "x", seed: 1.5 }, /seed/, "seed"],
    [{ prompt: "x", guidance_scale: "high" }, /guidance_scale/, "guidance_scale"],
    [{ prompt: "x", colour: "red" }, /colour/, ""],
  ];
  for (const [input, re, field] of cases) {
    assert.throws(() => OmniDiffusionRequest.fromDict(input), (err: unknown) => {
      assert.ok(err instanceof ValidationError, String(err));
      assert.match(err.message, re);
      if (field) assert.equal(err.field, field);
      return true;
    });
  }
  assert.throws(() => new OmniDiffusionRequest({ prompt: "x", numInferenceSteps: -1 }), /numInferenceSteps/);
});

test("request ids are generated unique", () => {
  const ids = new Set(Array.from({ length: 10_000 }, () => newRequestId()));
  assert.equal(ids.size, 10_000);
  assert.notEqual(new OmniDiffusionRequest({ prompt: "a" }).requestId, new OmniDiffusionRequest({ prompt: "a" }).requestId);
});

test("DiffusionOutput round-trips images (PNG), per-request errors, latents and metrics", () => {
  const data = new Uint8Array(4 * 2 * 3).map((_, i) => (i * 37) % 256);
  const out = new DiffusionOutput({
    output: [{ requestId: "r1", index: 0, seed: 5, width: 4, height: 2, data }],
    errors: { r2: new TimeoutError("took too long", { data: { method: "generate" } }) },
    trajectoryLatents: [{ requestId: "r1", shape: [2, 1, 1, 1, 2], data: Float32Array.from([0.5, -1, 2, 3.25]) }],
    trajectoryTimesteps: [{ requestId: "r1", timesteps: [999, 499] }],
    metrics: { totalMs: 12.5 },
  });
  const back = DiffusionOutput.fromDict(JSON.parse(JSON.stringify(out.toDict())));
  assert.deepEqual(back.output[0]!.data, data);
  assert.equal(back.output[0]!.seed, 5);
  assert.ok(back.errors.r2 instanceof TimeoutError);
  assert.equal(back.errors.r2!.data.method, "generate");
  assert.deepEqual(Array.from(back.trajectoryLatents![0]!.data), [0.5, -1, 2, 3.25]);
  assert.deepEqual(back.trajectoryTimesteps![0]!.timesteps, [999, 499]);
  assert.equal(back.metrics.totalMs, 12.5);
});

test("DiffusionOutput.fromDict rejects malformed input", () => {
  assert.throws(() => DiffusionOutput.fromDict({ output: [{ request_id: "r", index: 0 }] }), ValidationError);
  assert.throws(() => DiffusionOutput.fromDict({ output: [{ request_id: "r", index: 0, seed: 1, width: 1, height: 1, png_base64: "bm90IGEgcG5n" }] }), /not a valid PNG/);
  assert.throws(() => DiffusionOutput.fromDict({ output: [], trajectory_latents: [{ request_id: "r", shape: [3], data_base64: "AAAA" }] }), /trajectory_latents\.0/);
});

test("DiffusionOutput.fromDict is strict: an unknown or missing field is a ValidationError naming it", () => {
  // Was: the worker server's own envelope became an empty output, then a misleading "no image" error.
  const envelope = { outputs: [new DiffusionOutput().toDict()] };
  assert.throws(() => DiffusionOutput.fromDict(envelope), (e: unknown) => {
    assert.ok(e instanceof ValidationError);
    assert.equal(e.field, "output", "the missing field is named first");
    assert.match(e.message, /output: .*expected array/);
    assert.match(e.message, /Unrecognized key.*"outputs"/);
    return true;
  });
  assert.throws(() => DiffusionOutput.fromDict({}), (e: unknown) => e instanceof ValidationError && e.field === "output");
  const good = new DiffusionOutput({ output: [{ requestId: "r", index: 0, seed: 1, width: 1, height: 1, data: new Uint8Array(3) }] }).toDict();
  const extraImageKey = { ...good, output: [{ ...good.output[0]!, colour: "red" }] };
  assert.throws(() => DiffusionOutput.fromDict(extraImageKey), (e: unknown) => e instanceof ValidationError && /colour/.test(e.message) && e.field === "output.0");
  assert.throws(() => DiffusionOutput.fromDict({ ...good, errors: { r: { name: "X", code: "C", message: "m", stack: "s" } } }), /stack/);
  // What toDict writes always reads back.
  assert.equal(DiffusionOutput.fromDict(JSON.parse(JSON.stringify(good))).output.length, 1);
  // Requests are strict too, in both spellings.
  assert.throws(() => new OmniDiffusionRequest({ prompt: "x", colour: "red" } as never), (e: unknown) => e instanceof ValidationError && /colour/.test(e.message));
  assert.throws(() => OmniDiffusionRequest.fromDict({ request_id: "r" }), (e: unknown) => e instanceof ValidationError && e.field === "prompt");
});

test("config validation names each bad field", () => {
  assert.throws(() => parseConfig({ numGpus: 0 }), (e: unknown) => e instanceof ConfigError && /numGpus/.test(e.message));
  assert.throws(() => parseConfig({ executionProvider: "tpu" as never }), /executionProvider/);
  assert.throws(() => parseConfig({ limits: { maxSteps: 0 } }), /limits\.maxSteps/);
  assert.throws(() => parseConfig({ modelDirectory: "x" } as never), /modelDirectory/);
  const c = parseConfig({ numGpus: 2 });
  assert.equal(c.intraOpNumThreads >= 1, true);
  assert.match(c.model, /models\/tiny-shapes$/);
});

test("a request is parsed once by its one camelCase schema, from the constructor and from a dict", () => {
  const parse = requestInitSchema.safeParse.bind(requestInitSchema);
  let parses = 0;
  requestInitSchema.safeParse = ((input: unknown) => (parses++, parse(input))) as typeof requestInitSchema.safeParse;
  try {
    const r = new OmniDiffusionRequest({ prompt: "a red circle", numInferenceSteps: 3, seed: 5 });
    assert.equal(parses, 1);
    const back = OmniDiffusionRequest.fromDict(r.toDict());
    assert.equal(parses, 2, "fromDict parses once (the constructor does not parse its result again)");
    assert.deepEqual(back.toDict(), r.toDict());
  } finally {
    requestInitSchema.safeParse = parse;
  }
  // An image without bytes is refused by name (was: a TypeError from reading its length).
  assert.throws(() => new OmniDiffusionRequest({ prompt: "x", image: { width: 1, height: 1 } as never }), (e: unknown) => e instanceof ValidationError && e.field === "image");
  // A camelCase name is no key of the wire dict.
  assert.throws(() => OmniDiffusionRequest.fromDict({ prompt: "x", numInferenceSteps: 2 }), (e: unknown) => e instanceof ValidationError && /Unrecognized key: "numInferenceSteps"/.test(e.message));
});

test("proto ↔ request directly: image bytes are decoded as they are, errors name the proto's fields", () => {
  const image = { width: 8, height: 8, data: new Uint8Array(8 * 8 * 3).map((_, i) => (i * 13) % 256) };
  const mask = { width: 8, height: 8, data: new Uint8Array(64).map((_, i) => (i % 2 ? 255 : 0)) };
  const r = new OmniDiffusionRequest({ prompt: "a red circle", seed: 4, image, mask, strength: 0.5, returnTrajectoryLatents: true });
  resetPngCounters();
  const m = requestToProtoMessage(r);
  assert.deepEqual(pngCounters, { encodes: 1, decodes: 0 }, "the image's one encode, straight to bytes");
  assert.ok(Buffer.isBuffer(m.image) && m.image.subarray(1, 4).toString() === "PNG");
  const back = requestFromProtoMessage(m);
  assert.deepEqual(pngCounters, { encodes: 1, decodes: 2 }, "image and mask decoded once each, no base64 dict between");
  assert.deepEqual(back.toTransfer(), r.toTransfer());
  // Unset bytes (proto-loader's empty default) are no image; errors are the dict's.
  assert.equal(requestFromProtoMessage({ ...requestToProtoMessage(new OmniDiffusionRequest({ prompt: "x" })), image: Buffer.alloc(0), mask_image: Buffer.alloc(0) }).image, null);
  assert.throws(() => requestFromProtoMessage({ request_id: "p", prompt: "x", num_inference_steps: 0 }), (e: unknown) => e instanceof ValidationError && e.field === "num_inference_steps");
  assert.throws(() => requestFromProtoMessage({ request_id: "p", prompt: "x", image: Buffer.from("not a png") }), (e: unknown) => e instanceof ValidationError && e.field === "image");
  assert.throws(() => requestFromProtoMessage({ request_id: "p", prompt: "x", image: m.image, mask_image: Buffer.alloc(3, 1) }), (e: unknown) => e instanceof ValidationError && e.field === "mask_image");
});
