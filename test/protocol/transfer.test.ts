/** The in-machine transfer forms (worker IPC): raw bytes over the JSON channel (packed base64), no PNG, no re-validation. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { DiffusionOutput, OmniDiffusionRequest, TimeoutError, ValidationError, encodePng } from "../../src/index.js";
import { pngCounters, resetPngCounters } from "../../src/utils/png.js";
import { packBinary, unpackBinary } from "../../src/protocol/worker-ipc.js";

/** What the worker IPC channel does to a value: pack typed arrays, JSON, unpack. */
const overChannel = <T>(v: T): T => unpackBinary(JSON.parse(JSON.stringify(packBinary(v)))) as T;

const rgb = (w: number, h: number, v: number) => ({ width: w, height: h, data: new Uint8Array(w * h * 3).fill(v) });

test("a request crosses as its validated fields, image and mask raw, and comes back equal", () => {
  const mask = { width: 8, height: 8, data: new Uint8Array(64).fill(255) };
  const r = new OmniDiffusionRequest({ prompt: "a red circle", seed: 3, width: 8, height: 8, image: rgb(8, 8, 9), mask, strength: 0.5, scheduler: "euler" });
  resetPngCounters();
  const back = OmniDiffusionRequest.fromTransfer(overChannel(r.toTransfer()));
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
  const back = DiffusionOutput.fromTransfer(overChannel(out.toTransfer()));
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

test("the channel keeps typed arrays typed and leaves everything else to JSON", () => {
  // A view into part of a larger buffer sends exactly its own values.
  const odd = new Float32Array(new ArrayBuffer(20), 4, 3).fill(1.5);
  const sample = { u8: new Uint8Array([0, 7, 255]), f32: odd, nested: [{ at: new Date(0), n: null, s: "x" }] };
  const back = overChannel(sample) as unknown as { u8: Uint8Array; f32: Float32Array; nested: { at: string; n: null; s: string }[] };
  assert.ok(back.u8 instanceof Uint8Array);
  assert.deepEqual(Array.from(back.u8), [0, 7, 255]);
  assert.ok(back.f32 instanceof Float32Array);
  assert.deepEqual(Array.from(back.f32), [1.5, 1.5, 1.5]);
  assert.deepEqual(back.nested, [{ at: "1970-01-01T00:00:00.000Z", n: null, s: "x" }]);
});
