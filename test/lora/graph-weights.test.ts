/**
 * How layers are found in an export and how fused weights are written back: anonymous MatMul weights found
 * through node names, Conv/Gemm weights through their own names, float16/bfloat16 initializers fused in float32
 * and stored back in their dtype.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fromHalfBits } from "../../src/pipelines/float16.js";
import { ONNX_BFLOAT16, ONNX_FLOAT16, encodeInitializer, findLayerWeights, moduleOfNode, readInitializer, type Initializer } from "../../src/pipelines/lora/onnx-initializers.js";
import { addDelta, deltaMismatch } from "../../src/pipelines/lora/delta.js";
import { fusedWeight } from "../../src/pipelines/lora/delta-session.js";
import { matchModule } from "../../src/pipelines/lora/fuse-loras.js";
import { LORA_MODEL } from "./fixtures.js";

describe("LoRA targets in the graph", () => {
  it("the fixture export names its MatMul weights anonymously; node names give the modules", () => {
    const layers = findLayerWeights(readFileSync(join(LORA_MODEL, "unet", "model.onnx")));
    const q = layers.get("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q")!;
    assert.match(q.init.name, /^onnx::MatMul_\d+$/);
    assert.equal(q.layout, "in_out");
    const projIn = layers.get("down_blocks.0.attentions.0.proj_in")!;
    assert.deepEqual([projIn.op, projIn.layout, projIn.init.dims], ["Conv", "out_in", [16, 16, 1, 1]]);
    const te = findLayerWeights(readFileSync(join(LORA_MODEL, "text_encoder", "model.onnx")));
    assert.ok(te.get("text_model.encoder.layers.0.mlp.fc1"));
    assert.equal(moduleOfNode("/text_model/encoder/layers.0/self_attn/q_proj/MatMul"), "text_model.encoder.layers.0.self_attn.q_proj");
  });

  it("MatMul's transposed layout gets up·down transposed", () => {
    // W (torch [out=2, in=3]) stored [in, out]; down [1, 3] = [1, 2, 3], up [2, 1] = [10, 20]: Δ[o, i] = up[o]·down[i].
    const w = new Float32Array(6);
    const shapes = { weight: [3, 2], layout: "in_out" as const, down: [1, 3], up: [2, 1] };
    assert.equal(deltaMismatch(shapes), null);
    addDelta(w, shapes, Float32Array.of(1, 2, 3), Float32Array.of(10, 20), 0.5);
    assert.deepEqual(Array.from(w), [5, 10, 10, 20, 15, 30]);
    const t = new Float32Array(6);
    addDelta(t, { ...shapes, weight: [2, 3], layout: "out_in" }, Float32Array.of(1, 2, 3), Float32Array.of(10, 20), 0.5);
    assert.deepEqual(Array.from(t), [5, 10, 15, 10, 20, 30]);
    assert.match(deltaMismatch({ ...shapes, weight: [2, 3] })!, /shapes do not fit/);
  });

  it("float16 and bfloat16 initializers round-trip through float32 fusing", () => {
    for (const dataType of [ONNX_FLOAT16, ONNX_BFLOAT16]) {
      const raw = new Uint16Array(dataType === ONNX_FLOAT16 ? [0x3c00, 0x4000] : [0x3f80, 0x4000]); // 1, 2
      const init: Initializer = { name: "w", dims: [2], dataType, raw: new Uint8Array(raw.buffer) };
      const v = readInitializer(init, "/nonexistent");
      assert.deepEqual(Array.from(v), [1, 2]);
      v[0]! += 0.5;
      const bytes = encodeInitializer(init, v);
      // The raw_data payload is the last 4 bytes of the encoded TensorProto.
      const out = new Uint16Array(Uint8Array.from(bytes.subarray(bytes.length - 4)).buffer);
      const back = dataType === ONNX_FLOAT16 ? Array.from(out, fromHalfBits) : Array.from(out, (h) => new Float32Array(new Uint32Array([h << 16]).buffer)[0]);
      assert.deepEqual(back, [1.5, 2], `dtype ${dataType}`);
    }
  });

  it("big products run on onnxruntime and agree with the JavaScript loop, in both layouts", async () => {
    const [inp, out, rank] = [320, 256, 16]; // 1.3 M multiply-adds: above the onnxruntime threshold
    const rnd = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898 + seed) * 0.5);
    const down = rnd(rank * inp, 1);
    const up = rnd(out * rank, 2);
    for (const layout of ["in_out", "out_in"] as const) {
      const shapes = { weight: layout === "in_out" ? [inp, out] : [out, inp], layout, down: [rank, inp], up: [out, rank] };
      const base = rnd(inp * out, 3);
      const js = Float32Array.from(base);
      addDelta(js, shapes, down, up, 0.75);
      const viaOrt = await fusedWeight(Float32Array.from(base), shapes, down, up, 0.75);
      assert.notEqual(viaOrt, base);
      let worst = 0;
      for (let i = 0; i < js.length; i++) worst = Math.max(worst, Math.abs(js[i]! - viaOrt[i]!));
      assert.ok(worst < 1e-4, `${layout}: onnxruntime and JS differ by ${worst}`);
      assert.ok(Math.abs(viaOrt[5]! - base[5]!) > 1e-3, `${layout}: the delta was added`);
    }
  });

  it("a module is matched exactly, else by a unique suffix on a separator boundary (exports that wrap differently)", () => {
    const te = findLayerWeights(readFileSync(join(LORA_MODEL, "text_encoder", "model.onnx")));
    // An export whose CLIP is not under text_model.encoder (the full-size fixture's `/layers.0/self_attn/q_proj`).
    const bare = new Map([...te].map(([k, w]) => [k.replace(/^text_model\.encoder\./, ""), w]));
    const q = te.get("text_model.encoder.layers.0.self_attn.q_proj")!;
    assert.equal(matchModule(bare, "text_model.encoder.layers.0.self_attn.q_proj", "."), q);
    assert.equal(matchModule(new Map([...bare].map(([k, w]) => [k.replace(/\./g, "_"), w])), "text_model_encoder_layers_0_self_attn_q_proj", "_"), q);
    // A suffix two modules share matches neither; a module that is only a name's tail without a boundary neither.
    const two = new Map([["down_blocks.0.proj_in", q], ["up_blocks.0.proj_in", q]]);
    assert.equal(matchModule(two, "proj_in", "."), undefined);
    assert.equal(matchModule(new Map([["j_in", q]]), "proj_in", "."), undefined);
  });
});
