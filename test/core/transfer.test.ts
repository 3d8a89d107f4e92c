/** The in-machine transfer forms (worker IPC): raw bytes through a structured clone, no PNG, no re-validation. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { DiffusionOutput, OmniDiffusionRequest, TimeoutError, ValidationError, encodePng } from "../../src/index.js";
import { pngCounters, resetPngCounters } from "../../src/utils/png.js";

const rgb = (w: number, h: number, v: number) => ({ width: w, height: h, data: new Uint8Array(w * h * 3).fill(v) });

test("a request crosses as its validated fields, image and mask raw, and comes back equal", () => {
  const mask = { width: 8, height: 8, data: new Uint8Array(64).fill(255) };
  const r = new OmniDiffusionRequest({ prompt: "a red circle", seed: 3, width: 8, height: 8, image: rgb(8, 8, 9), mask, strength: 0.5, scheduler: "euler" });
  resetPngCounters();
  const back = OmniDiffusionRequest.fromTransfer(structuredClone(r.toTransfer()));
  assert.deepEqual(pngCounters, { encodes: 0, decodes: 0 });
  assert.ok(back instanceof OmniDiffusionRequest);
  assert.deepEqual({ ...back }, { ...r });
  assert.ok(back.image!.data instanceof Uint8Array);
  assert.throws(() => OmniDiffusionRequest.fromTransfer({ prompt: "x" } as never), ValidationError);
});

test("an output crosses as raw RGB and Float32Array latents, errors rebuilt into their classes", () => {
  const out = new DiffusionOutput({
    output: [{ ...rgb(2, 2, 7), requestId: "r1", index: 0, seed: 5 }],
    errors: { r2: new TimeoutError("took too long", { data: { method: "generate" } }) },
    trajectoryLatents: [{ requestId: "r1", shape: [2, 2], data: new Float32Array([0.5, -1, 2, 3.25]) }],
    trajectoryTimesteps: [{ requestId: "r1", timesteps: [999, 499] }],
    metrics: { totalMs: 12.5 },
  });
  resetPngCounters();
  const back = DiffusionOutput.fromTransfer(structuredClone(out.toTransfer()));
  assert.deepEqual(pngCounters, { encodes: 0, decodes: 0 });
  assert.deepEqual(Array.from(back.output[0]!.data), Array(12).fill(7));
  assert.equal(back.output[0]!.seed, 5);
  assert.ok(back.errors.r2 instanceof TimeoutError);
  assert.deepEqual(Array.from(back.trajectoryLatents![0]!.data), [0.5, -1, 2, 3.25]);
  assert.equal(back.metrics.totalMs, 12.5);
  assert.throws(() => DiffusionOutput.fromTransfer({ output: [{ requestId: "r", index: 0, seed: 0, width: 2, height: 2, data: new Uint8Array(3) }] }), /3 bytes for 2x2/);
  assert.throws(() => DiffusionOutput.fromTransfer(null), ValidationError);
});

test("an image read from the wire keeps its PNG: no decode until its pixels are read, none to send it on", () => {
  const png = encodePng(rgb(4, 4, 100));
  const dict = { output: [{ request_id: "r", index: 0, seed: 1, width: 4, height: 4, png_base64: png.toString("base64") }] };
  resetPngCounters();
  const out = DiffusionOutput.fromDict(dict);
  assert.deepEqual(out.toDict(), { ...new DiffusionOutput().toDict(), output: dict.output });
  assert.deepEqual(pngCounters, { encodes: 0, decodes: 0 });
  assert.deepEqual(Array.from(out.output[0]!.data.subarray(0, 3)), [100, 100, 100]);
  assert.equal(pngCounters.decodes, 1);
  // A PNG whose header says another size than the dict is refused up front, naming the image.
  assert.throws(() => DiffusionOutput.fromDict({ output: [{ ...dict.output[0]!, width: 5 }] }), /output\.0: PNG is 4x4 but declared 5x4/);
});
