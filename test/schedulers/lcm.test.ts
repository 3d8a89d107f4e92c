import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { ValidationError } from "../../src/errors/omni-error.js";
import { LcmScheduler, lcmBoundaryScalings } from "../../src/schedulers/lcm.js";
import { close, constRng, filled, seededRng } from "./helpers.js";

describe("LCM", () => {
  it("has diffusers' LCMScheduler defaults (SD schedule, 50 original steps, scaling 10)", () => {
    const s = new LcmScheduler();
    assert.equal(s.config.beta_schedule, "scaled_linear");
    assert.equal(s.config.original_inference_steps, 50);
    assert.equal(s.config.timestep_scaling, 10);
    assert.equal(s.initNoiseSigma, 1);
    close(s.alphasCumprod[999]!, 0.0046601, 1e-4);
  });

  it("timesteps: 4 → 999, 759, 499, 259; 1 → 999; 8 and 50 from the 20-step grid", () => {
    const s = new LcmScheduler();
    s.setTimesteps(4);
    assert.deepEqual(s.timesteps, [999, 759, 499, 259]);
    s.setTimesteps(1);
    assert.deepEqual(s.timesteps, [999]);
    s.setTimesteps(8);
    // floor(linspace(0, 50, 8, endpoint=False)) = 0, 6, 12, 18, 25, 31, 37, 43
    assert.deepEqual(s.timesteps, [999, 879, 759, 639, 499, 379, 259, 139]);
    s.setTimesteps(50);
    assert.equal(s.timesteps[49], 19);
  });

  it("timestep_spacing and steps_offset are ignored, as in diffusers", () => {
    const s = new LcmScheduler({ timestep_spacing: "trailing", steps_offset: 1 });
    s.setTimesteps(4);
    assert.deepEqual(s.timesteps, [999, 759, 499, 259]);
  });

  it("boundary condition scalings (sigma_data = 0.5, t * timestep_scaling)", () => {
    const { cSkip, cOut } = lcmBoundaryScalings(999, 10);
    close(cSkip, 2.5050075e-9, 1e-6);
    close(cOut, 0.99999999874749, 1e-12);
    assert.deepEqual(lcmBoundaryScalings(0, 10), { cSkip: 1, cOut: 0 });
  });

  it("one step: denoised = c_out x0 + c_skip x, re-noised to the next timestep (hand values)", () => {
    const s = new LcmScheduler();
    s.setTimesteps(4);
    const r0 = s.step(filled(1, 0.5), 999, filled(1, 1), constRng(0));
    close(r0.predOriginalSample[0]!, 7.3414929, 1e-5);
    close(r0.prevSample[0]!, 1.677542, 1e-5);
    const s2 = new LcmScheduler();
    s2.setTimesteps(4);
    close(s2.step(filled(1, 0.5), 999, filled(1, 1), constRng(1)).prevSample[0]!, 2.6510856, 1e-5);
  });

  it("the last step returns the denoised sample without noise (no rng needed)", () => {
    const s = new LcmScheduler();
    s.setTimesteps(2);
    assert.throws(() => s.step(filled(1, 0.1), 999, filled(1, 1)), (e: unknown) => e instanceof ValidationError && e.field === "rng");
    s.step(filled(1, 0.1), 999, filled(1, 1), seededRng(3));
    const r = s.step(filled(1, 0.1), 499, filled(1, 1));
    assert.deepEqual(r.prevSample, r.predOriginalSample);
    assert.notEqual(r.prevSample, r.predOriginalSample);
  });

  it("rejects more steps than original_inference_steps", () => {
    const s = new LcmScheduler();
    assert.throws(() => s.setTimesteps(51), (e: unknown) => e instanceof ValidationError && e.field === "num_inference_steps");
    assert.throws(() => new LcmScheduler({ original_inference_steps: 2000 }), ValidationError);
  });
});
