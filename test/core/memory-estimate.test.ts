/**
 * The worker memory estimate (core/memory-estimate.ts): its parts for an SD 1.5-shaped UNet, the refusal of a
 * request that would not fit the worker's share of the machine (naming the numbers and the field to change),
 * and the refusal of a worker count whose weights alone would not fit.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { DEFAULT_REQUEST_LIMITS, checkRequestLimits, snakeCaseFields } from "../../src/core/limits.js";
import { RUNTIME_BYTES, estimateWorkerBytes, memoryBudgetBytes } from "../../src/core/memory-estimate.js";
import { parseModelLimits, type ModelLimits } from "../../src/core/model-limits.js";
import { ConfigError, LimitExceededError } from "../../src/errors/omni-error.js";
import { checkWorkersFit, modelWeightBytesOnDisk } from "../../src/executors/shared/worker-memory.js";
import { describeOnnxModel, type ModelDescriptionInput } from "../../src/pipelines/model-limits.js";

const GiB = 1024 ** 3;
const SD15_UNET = { sample_size: 64, block_out_channels: [320, 640, 1280, 1280], attention_head_dim: 8, cross_attention_dim: 768 };

function sd15(budgetBytes: number): ModelLimits {
  return describeOnnxModel(sd15Input(budgetBytes));
}

function sd15Input(budgetBytes: number): ModelDescriptionInput {
  return {
    unetConfig: SD15_UNET,
    schedulerConfig: { _class_name: "PNDMScheduler", prediction_type: "epsilon" },
    vaeScale: 8,
    latentChannels: 4,
    sample: { name: "sample", type: "float32", shape: ["batch", 4, "h", "w"] },
    encoderHiddenStates: { name: "encoder_hidden_states", type: "float32", shape: ["batch", 77, 768] },
    textTokens: 77,
    textDim: 768,
    sizeMultiple: 64,
    weightBytes: 4 * GiB,
    vaeConfig: { block_out_channels: [128, 256, 512, 512] },
    budgetBytes,
  };
}

describe("the worker memory estimate", () => {
  it("an SD 1.5 UNet at 512²: attention scores and their softmax (2 × 8 heads × 4096²) grow with the square of the pixels", () => {
    const m = sd15(0).memory!;
    assert.equal(m.unetQuadraticBytes, 2 * 8 * 4096 * 4096 * 4);
    assert.equal(m.decodeBytes, 4 * 7 * 128 * 512 * 512);
    assert.equal(m.weightBytes, 4 * GiB);
    const at512 = estimateWorkerBytes({ ...sd15(0), memory: m }, 512, 512, 1, 1);
    const at768 = estimateWorkerBytes({ ...sd15(0), memory: m }, 768, 768, 1, 1);
    assert.equal(at512.total, RUNTIME_BYTES + 4 * GiB + Math.max(at512.unet, at512.decode));
    assert.ok(Math.abs(at768.unet - (m.unetLinearBytes * 2.25 + m.unetQuadraticBytes * 2.25 ** 2)) < 1);
    assert.ok(at768.unet / at512.unet > 4.5, "attention dominates: close to the square of 2.25");
  });

  it("attention slices divide the quadratic part; VAE slicing bounds the decode to one image's", () => {
    const plain = sd15(0).memory!;
    const lean = describeOnnxModel({ ...sd15Input(0), attentionSlices: 16, decodeImagesPerCall: 1 }).memory!;
    assert.equal(lean.unetQuadraticBytes, plain.unetQuadraticBytes / 16);
    assert.equal(lean.unetLinearBytes, plain.unetLinearBytes);
    assert.equal(lean.decodeImagesPerCall, 1);
    assert.equal(plain.decodeImagesPerCall, undefined, "absent: the batch in one call");
    const limits = (memory: typeof plain) => ({ ...sd15(0), memory });
    assert.equal(estimateWorkerBytes(limits(lean), 512, 512, 4, 4).decode, lean.decodeBytes);
    assert.equal(estimateWorkerBytes(limits(plain), 512, 512, 4, 4).decode, 4 * plain.decodeBytes);
  });

  it("crosses the wire: ModelLimits with memory parse, and an unknown memory field is refused", () => {
    const limits = sd15(10 * GiB);
    assert.deepEqual(parseModelLimits(JSON.parse(JSON.stringify(limits))), limits);
    assert.throws(() => parseModelLimits({ ...limits, memory: { ...limits.memory, extra: 1 } }), /extra/);
  });

  it("a request above the worker's budget is refused before anything runs, naming the estimate, its parts and the budget", () => {
    const model = sd15(6 * GiB);
    const limits = { ...DEFAULT_REQUEST_LIMITS, allowNonNativeSizes: true, maxRequestBytes: 64 * GiB };
    assert.doesNotThrow(() => checkRequestLimits({ prompt: "x", width: 512, height: 512, guidanceScale: 1 }, limits, model));
    assert.throws(
      () => checkRequestLimits({ prompt: "x", width: 768, height: 768, guidanceScale: 1 }, limits, model, { fieldName: snakeCaseFields }),
      (e: unknown) => {
        assert.ok(e instanceof LimitExceededError, String(e));
        assert.equal(e.field, "width");
        assert.match(e.message, /size 768x768 with 1 UNet row\(s\) \(width\) needs an estimated \d+\.\d\d GiB \(weights 4\.00 \+ runtime 0\.25 \+ the larger of UNet activations \d+\.\d\d and VAE decode \d+\.\d\d\) in its worker, more than the 6\.00 GiB it may use/);
        assert.equal(e.data.limit, 6 * GiB);
        assert.ok((e.data.estimatedBytes as number) > 6 * GiB);
        return true;
      },
    );
    // At the native size, four images do not fit where one does: the image count is the field to change.
    assert.throws(
      () => checkRequestLimits({ prompt: "x", numOutputsPerPrompt: 4, guidanceScale: 1 }, limits, model, { fieldName: snakeCaseFields }),
      (e: unknown) => e instanceof LimitExceededError && e.field === "num_outputs_per_prompt",
    );
  });

  it("a budget of 0 (a model described without one) checks nothing", () => {
    const limits = { ...DEFAULT_REQUEST_LIMITS, allowNonNativeSizes: true, maxRequestBytes: 1024 * GiB };
    assert.doesNotThrow(() => checkRequestLimits({ prompt: "x", width: 2048, height: 2048 }, limits, sd15(0)));
  });

  it("each of N workers gets 90 % of the machine / N", () => {
    assert.equal(memoryBudgetBytes(20 * GiB, 2), 9 * GiB);
  });
});

describe("worker counts that do not fit", () => {
  const MODEL = join(import.meta.dirname, "..", "..", "models", "tiny-shapes");

  it("reads the weights from disk (ONNX files and external data, not configs)", () => {
    const bytes = modelWeightBytesOnDisk(MODEL);
    assert.ok(bytes > 1_000_000 && bytes < 100_000_000, String(bytes));
  });

  it("are refused before any process starts, naming the per-worker need, the machine and the count that fits", () => {
    const perWorker = modelWeightBytesOnDisk(MODEL) + RUNTIME_BYTES;
    const machine = Math.ceil((perWorker * 3.5) / 0.9); // three fit, four do not
    assert.doesNotThrow(() => checkWorkersFit(MODEL, 3, machine));
    assert.throws(
      () => checkWorkersFit(MODEL, 4, machine),
      (e: unknown) => {
        assert.ok(e instanceof ConfigError, String(e));
        assert.equal(e.data.field, "numGpus");
        assert.match(e.message, /^4 workers of .*tiny-shapes need at least 4 × 0\.\d\d GiB \(weights 0\.0\d \+ runtime 0\.25\) = \d\.\d\d GiB before any image, more than 90 % of this machine's \d\.\d\d GiB; run 3 workers/);
        assert.equal(e.data.fits, 3);
        return true;
      },
    );
  });
});
