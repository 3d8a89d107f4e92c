/** SDXL in `info --model`, its cheap previews (SDXL's own latent → RGB fit) and its memory estimate. */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { OmniDiffusionRequest } from "../../src/core/request.js";
import { approximateRgb, SD_LATENT_RGB_FACTORS, SDXL_LATENT_RGB_FACTORS } from "../../src/pipelines/latent-preview.js";
import { loadPipeline } from "../../src/pipelines/load.js";
import { latentUnetRowParts } from "../../src/pipelines/model-limits.js";
import type { SteppablePipeline } from "../../src/pipelines/types.js";
import { sdxlDir } from "./fixtures.js";

const CLI = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));
const info = async (...args: string[]) => (await promisify(execFile)(process.execPath, ["--import", "tsx", CLI, "info", ...args], { timeout: 60_000 })).stdout;

describe("SDXL info, previews, memory", { timeout: 120_000 }, () => {
  it("info --model prints the SDXL conditioning, Turbo's defaults and the ensemble's switch point", async () => {
    const base = await info("--model", sdxlDir("sdxl"));
    assert.match(base, /^sdxl: +base: text_encoder hidden_states\.1 \+ text_encoder_2 hidden_states\.2 \(2048 wide\), pooled text_embeds; time_ids \[batch, 6\] \(original size, crop top-left, target size\); no negative prompt: zero uncond embeddings/m);
    assert.match(base, /^ +text_encoder_2 in: input_ids int32 \[batch_size, 77\]; out: text_embeds float32 \[batch_size, 1280\]/m);
    assert.match(base, /^size: +1024x1024 native/m);
    assert.match(base, /^layout: +latent: 4 channels, VAE x8, latents \/ 0\.13025 before decoding$/m);
    const turbo = JSON.parse(await info("--model", sdxlDir("sdxl-turbo"), "--json"));
    assert.equal(turbo.layout.sdxl.kind, "turbo");
    assert.deepEqual(turbo.model.defaults, { numInferenceSteps: 1, guidanceScale: 0, scheduler: "euler_a" });
    assert.deepEqual([turbo.model.width, turbo.model.height], [512, 512]);
    const ens = await info("--model", sdxlDir("sdxl-ensemble"));
    assert.match(ens, /^class: +OmniSdxlEnsemblePipeline$/m);
    assert.match(ens, /^sdxl: +base \+ refiner ensemble: the refiner takes over at denoising_end 0\.8/m);
    assert.match(ens, /^refiner: +refiner: text_encoder_2 hidden_states\.2 \(1280 wide\), pooled text_embeds; time_ids \[batch, 5\] \(original size, crop top-left, aesthetic score\)$/m);
  });

  it("approximate previews use SDXL's latent → RGB factors", async () => {
    const p = (await loadPipeline(sdxlDir("sdxl"), { intraOpNumThreads: 1 })) as SteppablePipeline;
    try {
      assert.equal(p.info.previews, "approx");
      const [s] = await p.prepare([new OmniDiffusionRequest({ prompt: "a cat", width: 64, height: 64, numInferenceSteps: 4, seed: 1 })]);
      await p.step([s!]);
      const x0 = s!.samples[0]!.predX0!;
      const [[preview]] = await p.decode([s!], true);
      assert.deepEqual(Buffer.from(preview!.data), Buffer.from(approximateRgb(x0, 0, 8, 8, SDXL_LATENT_RGB_FACTORS).data));
      assert.notDeepEqual(Buffer.from(preview!.data), Buffer.from(approximateRgb(x0, 0, 8, 8, SD_LATENT_RGB_FACTORS).data));
    } finally {
      await p.release();
    }
  });

  it("the float16 SDXL export's decode is estimated at its float32 VAE's size, the UNet at float16", async () => {
    const [fp32, fp16] = await Promise.all((["sdxl", "sdxl-fp16"] as const).map((l) => loadPipeline(sdxlDir(l), { intraOpNumThreads: 1 }) as Promise<SteppablePipeline>));
    try {
      const [a, b] = [fp32.describe!().memory!, fp16.describe!().memory!];
      assert.equal(b.decodeBytes, a.decodeBytes);
      assert.equal(b.unetLinearBytes * 2, a.unetLinearBytes);
    } finally {
      await Promise.all([fp32.release(), fp16.release()]);
    }
  });

  it("the memory estimate puts SDXL's first attention at the second level (down_block_types), 10 heads", () => {
    const cfg = JSON.parse(readFileSync(join(sdxlDir("sdxl"), "unet", "config.json"), "utf8"));
    const parts = latentUnetRowParts(cfg, 128, 128, 77); // 1024² latents
    assert.equal(parts.attention, 10 * (64 * 64) ** 2);
    // SD 1.5's (attention at the first level, 8 heads) is unchanged by it.
    assert.equal(latentUnetRowParts({ block_out_channels: [320, 640, 1280, 1280], attention_head_dim: 8 }, 64, 64, 77).attention, 8 * 4096 ** 2);
  });
});
