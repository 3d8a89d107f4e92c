/**
 * ModelLimits from a model's files and its UNet's ONNX inputs (pipelines/model-limits.ts): native size,
 * fixed vs dynamic export, prediction type and the samplers that fit it, the memory estimate per row.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { describeOnnxModel, ACTIVATION_FACTOR, type ModelDescriptionInput } from "../../src/pipelines/model-limits.js";

const SD: ModelDescriptionInput = {
  unetConfig: { sample_size: 64 },
  schedulerConfig: { _class_name: "PNDMScheduler", prediction_type: "epsilon" },
  vaeScale: 8,
  latentChannels: 4,
  sample: { name: "sample", type: "float32", shape: ["batch", 4, "height", "width"] },
  encoderHiddenStates: { name: "encoder_hidden_states", type: "float32", shape: ["batch", 77, 768] },
  textTokens: 77,
  textDim: 768,
  sizeMultiple: 64,
};

test("an SD-layout latent model: native 512 from sample_size × VAE scale, dynamic export, every VP sampler", () => {
  const m = describeOnnxModel(SD);
  assert.equal(m.nativeWidth, 512);
  assert.equal(m.nativeHeight, 512);
  assert.equal(m.spatial, "dynamic");
  assert.equal(m.predictionType, "epsilon");
  assert.ok(m.schedulers.includes("dpmpp_2m_karras") && !m.schedulers.includes("flow_euler"));
  assert.equal(m.bytesPerRowAtNative, (2 * 4 * 64 * 64 + 77 * 768) * 4 * ACTIVATION_FACTOR);
});

test("a fixed-shape export: the static H/W decide, and without sample_size they give the native size", () => {
  const fixed = { ...SD, unetConfig: {}, sample: { name: "sample", type: "float32" as const, shape: [1, 4, 96, 64] } };
  const m = describeOnnxModel(fixed);
  assert.equal(m.spatial, "fixed");
  assert.deepEqual([m.nativeWidth, m.nativeHeight], [512, 768]);
  // A fixed export's dims win over a config that says otherwise: they are the only size it can run.
  assert.deepEqual([describeOnnxModel({ ...fixed, unetConfig: { sample_size: 64 } }).nativeHeight], [768]);
  // Nothing says: Stable Diffusion's 512.
  const none = describeOnnxModel({ ...SD, unetConfig: {} });
  assert.deepEqual([none.nativeWidth, none.spatial], [512, "dynamic"]);
});

test("a flow-matching model gets only the flow sampler; a v-prediction model every other one", () => {
  const flow = describeOnnxModel({ ...SD, schedulerConfig: { _class_name: "FlowMatchEulerDiscreteScheduler" } });
  assert.equal(flow.predictionType, "flow_prediction");
  assert.deepEqual(flow.schedulers, ["flow_euler"]);
  const v = describeOnnxModel({ ...SD, schedulerConfig: { prediction_type: "v_prediction" } });
  assert.ok(!v.schedulers.includes("flow_euler") && v.schedulers.includes("ddim"));
});
