import assert from "node:assert/strict";
import { copyFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { ModelLoadError } from "../../src/errors/omni-error.js";
import { loadPipeline } from "../../src/pipelines/load.js";
import { copyModel } from "../helpers/model.js";

async function loadError(dir: string): Promise<ModelLoadError> {
  try {
    const p = await loadPipeline(dir, { intraOpNumThreads: 1 });
    await p.release();
  } catch (err) {
    assert.ok(err instanceof ModelLoadError, `expected ModelLoadError, got ${err}`);
    assert.equal(err.code, "OMNI_ERR_MODEL_LOAD");
    return err;
  }
  assert.fail("loading should have failed");
}

test("a folder that does not exist is named in the error", async () => {
  const err = await loadError("/nonexistent/model-dir");
  assert.match(err.message, /model folder not found: \/nonexistent\/model-dir/);
});

test("a missing model_index.json is named", async () => {
  const dir = copyModel();
  rmSync(join(dir, "model_index.json"));
  assert.match((await loadError(dir)).message, /has no model_index\.json/);
});

test("an unknown _class_name lists the registered pipelines", async () => {
  const dir = copyModel();
  writeFileSync(join(dir, "model_index.json"), JSON.stringify({ _class_name: "StableCascadePipeline" }));
  const err = await loadError(dir);
  assert.match(err.message, /unknown pipeline class "StableCascadePipeline"; registered: .*OnnxStableDiffusionPipeline/);
});

test("a missing component file is named", async () => {
  const dir = copyModel();
  rmSync(join(dir, "unet", "model.onnx"));
  assert.match((await loadError(dir)).message, /missing unet\/model\.onnx/);
});

test("a UNet with the wrong input names says which inputs are missing and which exist", async () => {
  const dir = copyModel();
  copyFileSync(join(dir, "vae_decoder", "model.onnx"), join(dir, "unet", "model.onnx"));
  const err = await loadError(dir);
  assert.match(err.message, /unet .* lacks input\(s\) sample, timestep, encoder_hidden_states; it has latent_sample/);
});

test("a corrupt ONNX file fails with the component and path", async () => {
  const dir = copyModel();
  writeFileSync(join(dir, "text_encoder", "model.onnx"), "not an onnx file");
  assert.match((await loadError(dir)).message, /cannot load text_encoder from .*text_encoder\/model\.onnx/);
});

test("a missing tokenizer is named", async () => {
  const dir = copyModel();
  rmSync(join(dir, "tokenizer"), { recursive: true });
  assert.match((await loadError(dir)).message, /no tokenizer\/tokenizer\.json/);
});
