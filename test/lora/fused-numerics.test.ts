/**
 * LoRAs fused into the ONNX weights land on what torch computes with the LoRA merged into the modules
 * (training/fixtures/make_lora_fixtures.py): kohya (float16, alpha) and PEFT (float32, no alpha) files, UNet and
 * text encoder, attention / projection (1x1 conv and linear) / feed-forward layers, LoCon 3x3 convs (bfloat16),
 * two LoRAs at once and a negative scale.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { OmniDiffusionRequest } from "../../src/core/request.js";
import type { LoraSpec } from "../../src/core/weights.js";
import { loadPipeline } from "../../src/pipelines/load.js";
import { fuseLoras, FUSED_RESIDENT_PER_BYTE } from "../../src/pipelines/lora/fuse-loras.js";
import { assertLatentsClose, assertPixelsClose } from "../models/fixtures.js";
import { LORA_FIXTURES, LORA_MODEL, lora, loraExpected } from "./fixtures.js";
import { join } from "node:path";

const CASES: Record<string, LoraSpec[]> = {
  base: [],
  "kohya@0.8": [lora("style-kohya", 0.8)],
  "peft@1": [lora("style-peft", 1)],
  "kohya@0.5+peft@-0.7": [lora("style-peft", -0.7), lora("style-kohya", 0.5)],
  "locon@1": [lora("locon", 1)],
};

// The same model with its UNet and text-encoder weights in weights.pb (external data, as SD-size exports).
const EXTERNAL = join(LORA_FIXTURES, "model-external");
const FP16_WEIGHTS = join(LORA_FIXTURES, "model-fp16-weights");

describe("fused LoRAs match the torch reference with the LoRA merged", () => {
  const runs = [...Object.entries(CASES).map(([name, loras]) => ({ name, loras, dir: LORA_MODEL, label: name })), ...["base", "kohya@0.5+peft@-0.7"].map((name) => ({ name, loras: CASES[name]!, dir: EXTERNAL, label: `${name}, external weights.pb` })),
    // float16 weights behind Cast nodes: found through the Cast, fused in float32, stored back as float16.
    ...["base", "kohya@0.8"].map((name) => ({ name: `fp16-weights ${name}`, loras: CASES[name]!, dir: FP16_WEIGHTS, label: `${name}, float16 weights` })),
  ];
  for (const { name, loras, dir, label } of runs) {
    it(label, async () => {
      const expected = loraExpected.cases[name]!;
      const pipeline = await loadPipeline(dir, { intraOpNumThreads: 1, loras });
      try {
        const req = new OmniDiffusionRequest({ ...loraExpected.request, requestId: name, returnTrajectoryLatents: true });
        const out = await pipeline.generate([req]);
        assert.deepEqual(Object.keys(out.errors), []);
        const traj = out.trajectoryLatents![0]!;
        const size = loraExpected.latentShape.reduce((n, d) => n * d, 1);
        assertLatentsClose(traj.data.subarray(traj.data.length - size), expected.latents, 1e-4, name);
        const img = out.imagesFor(name)[0]!;
        assertPixelsClose(Uint8Array.from(img.data), expected.pixels, 2, name, 3);
      } finally {
        await pipeline.release();
      }
    });
  }

  it("a released pipeline reloads with its LoRA fused again (the fused weights are not kept between loads)", async () => {
    const expected = loraExpected.cases["kohya@0.8"]!;
    const pipeline = await loadPipeline(LORA_MODEL, { intraOpNumThreads: 1, loras: CASES["kohya@0.8"]! });
    try {
      await pipeline.release();
      await pipeline.reload();
      const out = await pipeline.generate([new OmniDiffusionRequest({ ...loraExpected.request, requestId: "reloaded" })]);
      assertPixelsClose(Uint8Array.from(out.imagesFor("reloaded")[0]!.data), expected.pixels, 2, "reloaded", 3);
    } finally {
      await pipeline.release();
    }
  });

  it("a pipeline with fused LoRAs counts their inline copies in its memory figures (the model cache's budget reads them)", async () => {
    const loras = CASES["kohya@0.5+peft@-0.7"]!;
    const { patchedBytes, layers } = await fuseLoras(LORA_MODEL, loras);
    assert.ok(layers > 0 && patchedBytes > 0);
    const plain = await loadPipeline(LORA_MODEL, { intraOpNumThreads: 1 });
    const fused = await loadPipeline(LORA_MODEL, { intraOpNumThreads: 1, loras });
    try {
      const weights = (p: typeof plain) => p.describe!().memory!.weightBytes;
      assert.equal(weights(fused) - weights(plain), Math.round(patchedBytes * FUSED_RESIDENT_PER_BYTE));
    } finally {
      await Promise.all([plain.release(), fused.release()]);
    }
  });
});
