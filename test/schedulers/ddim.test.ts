import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { ValidationError } from "../../src/errors/omni-error.js";
import { DdimScheduler } from "../../src/schedulers/ddim.js";
import { SD_CONFIG, close, constRng, filled } from "./helpers.js";

/** SD 1.5's scheduler_config.json (PNDM), which pipelines feed to DDIM. */
const SD15 = { ...SD_CONFIG, steps_offset: 1, set_alpha_to_one: false, clip_sample: false };

describe("DDIM", () => {
  it("has diffusers' DDIMScheduler defaults", () => {
    const s = new DdimScheduler();
    assert.equal(s.config.beta_schedule, "linear");
    assert.equal(s.config.timestep_spacing, "leading");
    assert.equal(s.config.clip_sample, true);
    assert.equal(s.config.set_alpha_to_one, true);
    assert.equal(s.initNoiseSigma, 1);
    assert.deepEqual(s.sigmas, []);
  });

  it("SD 1.5 config, 50 steps: 981 … 1 and no input scaling", () => {
    const s = new DdimScheduler(SD15);
    s.setTimesteps(50);
    assert.equal(s.timesteps[0], 981);
    assert.equal(s.timesteps[49], 1);
    const x = filled(4, 2);
    assert.equal(s.scaleModelInput(x, 981), x);
  });

  it("one step with a constant epsilon matches the DDIM formula (hand value)", () => {
    const s = new DdimScheduler(SD15);
    s.setTimesteps(50);
    const sample = filled(3, 1);
    const eps = filled(3, 0.5);
    const { prevSample, predOriginalSample } = s.step(eps, 981, sample);
    close(predOriginalSample[0]!, 6.5982588, 1e-5);
    close(prevSample[0]!, 1.0612257, 1e-5);
    // Inputs untouched.
    assert.deepEqual(Array.from(sample), [1, 1, 1]);
    assert.deepEqual(Array.from(eps), [0.5, 0.5, 0.5]);
  });

  it("clip_sample clamps x0 to ±clip_sample_range before the update", () => {
    const s = new DdimScheduler({ ...SD15, clip_sample: true });
    s.setTimesteps(50);
    const { prevSample, predOriginalSample } = s.step(filled(1, 0.5), 981, filled(1, 1));
    assert.equal(predOriginalSample[0], 1);
    close(prevSample[0]!, 0.58350928, 1e-5);
  });

  it("last step uses alpha_bar[0] (set_alpha_to_one=false) or 1 (true)", () => {
    const s = new DdimScheduler(SD15);
    s.setTimesteps(50);
    close(s.step(filled(1, 0.5), 1, filled(1, 1)).prevSample[0]!, 0.99435658, 1e-5);
    const one = new DdimScheduler({ ...SD15, set_alpha_to_one: true });
    one.setTimesteps(50);
    const r = one.step(filled(1, 0.5), 1, filled(1, 1));
    // alpha_prev = 1: the step returns x0 exactly.
    close(r.prevSample[0]!, r.predOriginalSample[0]!, 1e-6);
  });

  it("trailing spacing steps by T//n and ends on the final alpha", () => {
    const s = new DdimScheduler({ ...SD15, timestep_spacing: "trailing", set_alpha_to_one: true });
    s.setTimesteps(4);
    assert.deepEqual(s.timesteps, [999, 749, 499, 249]);
  });

  it("eta > 0 adds std_dev_t * noise and needs an rng", () => {
    const s = new DdimScheduler({ ...SD15, eta: 1 });
    s.setTimesteps(50);
    assert.throws(() => s.step(filled(1, 0.5), 981, filled(1, 1)), (e: unknown) => e instanceof ValidationError && e.field === "rng");
    const ac = s.alphasCumprod;
    const a = ac[981]!;
    const ap = ac[961]!;
    const x0 = (1 - Math.sqrt(1 - a) * 0.5) / Math.sqrt(a);
    const std = Math.sqrt(((1 - ap) / (1 - a)) * (1 - a / ap));
    const expected = Math.sqrt(ap) * x0 + Math.sqrt(1 - ap - std * std) * 0.5 + std * 1;
    close(s.step(filled(1, 0.5), 981, filled(1, 1), constRng(1)).prevSample[0]!, expected, 1e-5);
  });

  it("addNoise is the forward process q(x_t | x0)", () => {
    const s = new DdimScheduler(SD15);
    const a = s.alphasCumprod[499]!;
    close(s.addNoise(filled(1, 0.5), filled(1, 2), 499)[0]!, Math.sqrt(a) * 0.5 + Math.sqrt(1 - a) * 2, 1e-6);
  });

  it("rejects stepping before setTimesteps and non-integer timesteps", () => {
    const s = new DdimScheduler(SD15);
    assert.throws(() => s.step(filled(1, 0), 981, filled(1, 0)), ValidationError);
    s.setTimesteps(10);
    assert.throws(() => s.step(filled(1, 0), 900.5, filled(1, 0)), (e: unknown) => e instanceof ValidationError && e.field === "timestep");
    assert.throws(() => s.step(filled(2, 0), 901, filled(1, 0)), (e: unknown) => e instanceof ValidationError && e.field === "model_output");
  });
});
