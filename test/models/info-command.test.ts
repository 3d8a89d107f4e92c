/** `omni-diffusion info --model <fixture>`: layout, dtypes, native size, fitting samplers, guidance. */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { fixtureDir } from "./fixtures.js";

const CLI = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));
const info = async (...args: string[]) => (await promisify(execFile)(process.execPath, ["--import", "tsx", CLI, "info", ...args], { timeout: 60_000 })).stdout;

describe("info command on the layout fixtures", { timeout: 120_000 }, () => {
  it("an fp16 SD 1.5 export: dtypes with the boundary conversion, int64 [1] timestep, PNDM, CFG", async () => {
    const out = await info("--model", fixtureDir("sd15-fp16"));
    assert.match(out, /^layout: +latent: 4 channels, VAE x8, latents \/ 0\.18215 before decoding$/m);
    assert.match(out, /^dtypes: +float16 \(converted from\/to float32 at each model boundary\); timestep int64, one per UNet call$/m);
    assert.match(out, /text_encoder +in: input_ids int32 \[batch_size, 77\]; out: last_hidden_state float16 \[batch_size, 77, 768\]/);
    assert.match(out, /unet +in: sample float16 \[batch_size, 4, height, width\], timestep int64 \[1\]/);
    assert.match(out, /^size: +512x512 native \(dynamic export; multiples of 64\)$/m);
    assert.match(out, /^prediction: epsilon \(scheduler_config: PNDMScheduler\)$/m);
    assert.match(out, /^schedulers: .*\bpndm\b.*\(those fitting epsilon\)$/m);
    assert.doesNotMatch(out, /^schedulers: .*flow_euler/m);
    assert.match(out, /^guidance: +classifier-free/m);
    assert.match(out, /^defaults: +20 steps, guidance 7\.5, scheduler pndm$/m);
  });

  it("--json for LCM (no CFG, per-row timesteps, LCM defaults) and the fixed-shape export", async () => {
    const lcm = JSON.parse(await info("--model", fixtureDir("lcm"), "--json"));
    assert.equal(lcm.layout.guidance, "embedded");
    assert.deepEqual(lcm.layout.timestep, { type: "int64", perRow: true });
    assert.deepEqual(lcm.model.defaults, { numInferenceSteps: 4, guidanceScale: 8.5, scheduler: "lcm" });
    assert.equal(lcm.device, "cpu");
    const fixed = JSON.parse(await info("--model", fixtureDir("sd15-fixed"), "--json"));
    assert.equal(fixed.limits.spatial, "fixed");
    assert.deepEqual(fixed.layout.components.unet.inputs[0].shape, ["batch_size", 4, 64, 64]);
    const v = JSON.parse(await info("--model", fixtureDir("sd21"), "--json"));
    assert.equal(v.limits.predictionType, "v_prediction");
    assert.equal(v.layout.tokenizer.source, "tokenizer.json");
    const turbo = JSON.parse(await info("--model", fixtureDir("sd-turbo"), "--json"));
    assert.equal(turbo.layout.tokenizer.source, "vocab.json + merges.txt");
  });
});
