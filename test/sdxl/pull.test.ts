/**
 * `pullModel` of an SDXL ONNX export (Optimum's layout: model_index.json with diffusers' `vae` entry, two text
 * encoders and tokenizers, vae_decoder/ and vae_encoder/ folders, PyTorch weights beside) from the stand-in Hub:
 * only what the pipeline loads comes down, and the pulled snapshot generates the reference image.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { OmniDiffusionRequest } from "../../src/core/request.js";
import { pullModel } from "../../src/hub/pull-model.js";
import { loadPipeline } from "../../src/pipelines/load.js";
import { FakeHub } from "../hub/fake-hub.js";
import { assertPixelsClose, subsample } from "../models/fixtures.js";
import { sdxlDir, sdxlExpected } from "./fixtures.js";

const REPO = "fixtures/sdxl-onnx";
const EXTRA = {
  "README.md": "# sdxl\n",
  "vae/config.json": "{}",
  "vae/diffusion_pytorch_model.safetensors": Buffer.alloc(4096, 3),
  "unet/diffusion_pytorch_model.fp16.safetensors": Buffer.alloc(8192, 7),
  "vae_encoder/model.onnx": Buffer.alloc(5000, 1),
  "vae_encoder/config.json": "{}",
};

describe("pull an SDXL ONNX export", { timeout: 120_000 }, () => {
  let hub: FakeHub;
  const cache = mkdtempSync(join(tmpdir(), "omni-sdxl-hub-"));
  before(async () => {
    hub = await FakeHub.start();
    hub.addRepo(REPO, { dir: sdxlDir("sdxl"), extra: EXTRA });
  });
  after(async () => {
    await hub.close();
    rmSync(cache, { recursive: true, force: true });
  });

  it("downloads both encoders, both tokenizers, the UNet and vae_decoder only, and the snapshot runs", async () => {
    const r = await pullModel(REPO, { cacheDir: cache, env: { HF_ENDPOINT: hub.url } });
    const files = [...r.files].sort();
    for (const f of ["text_encoder/model.onnx", "text_encoder_2/model.onnx", "text_encoder_2/config.json", "tokenizer/vocab.json", "tokenizer_2/merges.txt", "tokenizer_2/tokenizer_config.json", "unet/model.onnx", "vae_decoder/model.onnx", "vae_decoder/config.json"]) {
      assert.ok(files.includes(f), `${f} in ${files.join(", ")}`);
    }
    for (const f of files) assert.doesNotMatch(f, /safetensors|README|^vae_encoder\//, f);
    const p = await loadPipeline(r.snapshotDir, { intraOpNumThreads: 1 });
    try {
      const c = sdxlExpected.layouts.sdxl.cases[0]!;
      const req = new OmniDiffusionRequest({ ...c.request, requestId: "pulled" });
      const out = await p.generate([req]);
      assert.deepEqual(Object.keys(out.errors), []);
      assertPixelsClose(subsample(out.imagesFor("pulled")[0]!, c.image.stride), c.image.pixels[0]!, 2, "pulled sdxl", 3);
    } finally {
      await p.release();
    }
  });
});
