/**
 * What each layout fixture declares, read back through the loader: tokenizer formats and padding, input dtypes,
 * per-row vs single timesteps, fixed-size refusal.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { OmniDiffusionRequest } from "../../src/core/request.js";
import { ValidationError } from "../../src/errors/omni-error.js";
import { OnnxModel } from "../../src/pipelines/onnx-model.js";
import { loadPipeline } from "../../src/pipelines/load.js";
import { PromptEncoder } from "../../src/pipelines/prompt-encoder.js";
import { componentPath } from "../../src/pipelines/model-files.js";
import type { SteppablePipeline } from "../../src/pipelines/types.js";
import { LAYOUTS, expected, fixtureDir } from "./fixtures.js";

describe("layout fixtures", () => {
  for (const layout of LAYOUTS) {
    it(`${layout}: CLIP BPE token ids match the reference tokenizer (77 tokens, padding, truncation keeps the end token)`, () => {
      const dir = fixtureDir(layout);
      const enc = new PromptEncoder(dir, new OnnxModel("text_encoder", componentPath(dir, "text_encoder"), {}));
      assert.equal(enc.maxLength, 77);
      for (const [prompt, ids] of Object.entries(expected.layouts[layout].tokens)) assert.deepEqual(enc.tokenize(prompt), ids, prompt);
    });
  }

  it("SD 2.x pads with '!' (id 0) and SD 1.x with the end-of-text token, as their tokenizer configs say", () => {
    const padOf = (layout: "sd21" | "sd15") => expected.layouts[layout].tokens["a photo of a cat"]!.at(-1);
    assert.equal(padOf("sd21"), 0);
    assert.equal(padOf("sd15"), expected.layouts.sd15.tokens["a photo of a cat"]![8]); // the end token, repeated
  });

  it("the fixed-shape export refuses other sizes with a 4xx naming the one size it serves", async () => {
    const p = (await loadPipeline(fixtureDir("sd15-fixed"), { intraOpNumThreads: 1 })) as SteppablePipeline;
    try {
      assert.deepEqual([p.info.width, p.info.height], [512, 512]);
      assert.doesNotThrow(() => p.validate(new OmniDiffusionRequest({ prompt: "x" })));
      assert.throws(
        () => p.validate(new OmniDiffusionRequest({ prompt: "x", width: 256, height: 512 })),
        (e: unknown) => e instanceof ValidationError && e.statusCode === 400 && e.field === "width" && /size 256x512 \(width\) is not allowed: this model.s export has a fixed size; allowed: 512x512/.test(e.message),
      );
    } finally {
      await p.release();
    }
  });
});
