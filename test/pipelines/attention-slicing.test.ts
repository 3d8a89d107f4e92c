/**
 * Graph rewrites that bound a worker's memory on big models, checked on the SD 1.5-layout fixture against the
 * graphs as exported: attention sliced into query-row chunks computes the same outputs (even and uneven chunks,
 * batch 2), inline weights turned into references to the file's own bytes load the same model, and a pipeline
 * with both and VAE slicing (a batch decoded one image per call) draws the same images as one without.
 */
import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { describe, it } from "node:test";
import * as ort from "onnxruntime-node";
import { OmniDiffusionRequest } from "../../src/core/request.js";
import { sliceAttention } from "../../src/pipelines/onnx-graph/attention-slicing.js";
import { externalizeInlineWeights } from "../../src/pipelines/onnx-graph/external-weights.js";
import { loadPipeline } from "../../src/pipelines/load.js";
import { OnnxModel, memoryTuningFor, type MemoryTuning } from "../../src/pipelines/onnx-model.js";
import { ModelLoadError } from "../../src/errors/omni-error.js";
import type { SteppablePipeline } from "../../src/pipelines/types.js";

const SD15 = join(import.meta.dirname, "..", "fixtures", "models", "sd15");
const UNET = join(SD15, "unet", "model.onnx");
const TEXT = join(SD15, "text_encoder", "model.onnx");

const session = (model: string | Uint8Array, dir: string) =>
  typeof model === "string"
    ? ort.InferenceSession.create(model, { intraOpNumThreads: 1 })
    : ort.InferenceSession.create(model, { intraOpNumThreads: 1, extra: { session: { model_external_initializers_file_folder_path: dir } } });

/** Deterministic inputs for a session, with the given size for the dynamic dims of `sample`. */
function feedsFor(s: ort.InferenceSession, batch: number, h: number, w: number): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  let k = 0;
  for (const m of s.inputMetadata) {
    if (!m.isTensor) continue;
    const shape = m.shape.map((d, i) => (typeof d === "number" ? d : i === 0 ? batch : m.name === "sample" ? (i === 2 ? h : w) : 77));
    const n = shape.reduce((a, b) => a * b, 1);
    if (m.type === "int64") feeds[m.name] = new ort.Tensor("int64", BigInt64Array.from({ length: n }, (_, i) => BigInt((i * 37) % 400)), shape);
    else if (m.type === "int32") feeds[m.name] = new ort.Tensor("int32", Int32Array.from({ length: n }, (_, i) => (i * 37) % 400), shape);
    else feeds[m.name] = new ort.Tensor("float32", Float32Array.from({ length: n }, () => Math.sin(++k * 0.7)), shape);
  }
  return feeds;
}

async function maxDiff(a: ort.InferenceSession, b: ort.InferenceSession, feeds: Record<string, ort.Tensor>): Promise<number> {
  const x = (await a.run(feeds))[a.outputNames[0]!]!.data as Float32Array;
  const y = (await b.run(feeds))[b.outputNames[0]!]!.data as Float32Array;
  assert.equal(x.length, y.length);
  let d = 0;
  for (let i = 0; i < x.length; i++) d = Math.max(d, Math.abs(x[i]! - y[i]!));
  return d;
}

describe("attention slicing", () => {
  it("finds the UNet's attention and computes the same outputs in even and uneven row chunks", async () => {
    const original = readFileSync(UNET);
    const reference = await session(UNET, dirname(UNET));
    for (const [slices, batch, h, w] of [
      [4, 1, 8, 8], // 64 rows: 4 chunks of 16
      [3, 2, 7, 7], // 49 rows: chunks of 17, 17, 15; two rows of the batch
      [16, 1, 4, 2], // 8 rows in 16 slices: chunks of 1 and empty ones
    ] as const) {
      const sliced = sliceAttention(original, slices);
      assert.ok(sliced && sliced.sliced >= 1, "the fixture's UNet has attention to slice");
      const s = await session(sliced.bytes, dirname(UNET));
      const d = await maxDiff(reference, s, feedsFor(reference, batch, h, w));
      assert.ok(d <= 1e-5, `${slices} slices at ${h}x${w}, batch ${batch}: outputs differ by ${d}`);
      await s.release();
    }
    await reference.release();
  });

  it("leaves a graph without that attention alone, and one slice means no rewrite", () => {
    // The text encoder's attention adds a causal mask with a row axis: slicing it would need the mask sliced too.
    assert.equal(sliceAttention(readFileSync(TEXT), 4), null);
    assert.equal(sliceAttention(readFileSync(UNET), 1), null);
  });
});

describe("inline weights mapped from the file", () => {
  it("turns the weights into references to the file's own bytes and loads the same model", async () => {
    const graph = externalizeInlineWeights(TEXT);
    assert.ok(graph, "the fixture's text encoder has inline weights");
    assert.ok(graph.length < statSync(TEXT).size / 4, `the graph (${graph.length} B) no longer carries the weights (${statSync(TEXT).size} B file)`);
    const reference = await session(TEXT, dirname(TEXT));
    const mapped = await session(graph, dirname(TEXT));
    assert.equal(await maxDiff(reference, mapped, feedsFor(reference, 2, 0, 0)), 0);
    await Promise.all([reference.release(), mapped.release()]);
  });

  it("returns null for a file whose weights are already external, and a non-ONNX file fails to load with the path", async () => {
    const dir = mkdtempSync(join(tmpdir(), "omni-external-"));
    try {
      // The rewritten graph saved beside a copy of its data file: an export with external weights.
      writeFileSync(join(dir, "model.onnx"), externalizeInlineWeights(TEXT)!);
      copyFileSync(TEXT, join(dir, basename(TEXT) + ".data"));
      assert.equal(externalizeInlineWeights(join(dir, "model.onnx")), null);
      writeFileSync(join(dir, "garbage.onnx"), "{ not a model");
      const model = new OnnxModel("text_encoder", join(dir, "garbage.onnx"), { memory: { mapInlineWeights: true } });
      await assert.rejects(model.load(), (e: unknown) => e instanceof ModelLoadError && e.message.includes("garbage.onnx"));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("a pipeline with both", { timeout: 300_000 }, () => {
  it("draws the same image as the graphs as exported, and reports the slices in its memory estimate", async () => {
    const request = () => new OmniDiffusionRequest({ prompt: "a red circle on a blue background", width: 64, height: 64, numInferenceSteps: 2, guidanceScale: 3, seed: 5, numOutputsPerPrompt: 2 });
    const run = async (memory: Partial<MemoryTuning>) => {
      const p = (await loadPipeline(SD15, { intraOpNumThreads: 1, memory })) as SteppablePipeline;
      try {
        return { images: (await p.generate([request()])).output, memory: p.describe!().memory! };
      } finally {
        await p.release();
      }
    };
    const plain = await run({ attentionSlices: 1, mapInlineWeights: false, vaeSlicing: false });
    const lean = await run({ attentionSlices: 4, mapInlineWeights: true, vaeSlicing: true });
    assert.equal(lean.images.length, 2);
    lean.images.forEach((img, i) => assert.deepEqual(Buffer.from(img.data), Buffer.from(plain.images[i]!.data), `image ${i}`));
    assert.equal(lean.memory.decodeImagesPerCall, 1, "two images, decoded one per call");
    assert.ok(plain.memory.unetQuadraticBytes > 0);
    assert.equal(lean.memory.unetQuadraticBytes, plain.memory.unetQuadraticBytes / 4, "a quarter of the score matrices alive at once");
  });

  it("big models get all three by default, small ones none", () => {
    const big = memoryTuningFor(4 * 1024 ** 3);
    const small = memoryTuningFor(3 * 1024 ** 2);
    assert.deepEqual([big.attentionSlices > 1, big.mapInlineWeights, big.vaeSlicing], [true, true, true]);
    assert.deepEqual([small.attentionSlices, small.mapInlineWeights, small.vaeSlicing], [1, false, false]);
  });
});
