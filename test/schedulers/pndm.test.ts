import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { createScheduler } from "../../src/schedulers/index.js";
import { PndmScheduler } from "../../src/schedulers/pndm.js";
import { SD_CONFIG, allClose, filled } from "./helpers.js";

/** SD 1.5's scheduler_config.json. */
const SD15 = { ...SD_CONFIG, _class_name: "PNDMScheduler", steps_offset: 1, set_alpha_to_one: false, skip_prk_steps: true, clip_sample: false };

/**
 * Four steps from a sample of ones with model outputs 0.1·(k+1) (+0.05 on the second element) at call k.
 * Expected values from diffusers' PNDMScheduler.step_plms as transcribed in training/fixtures/schedulers.py.
 */
function run(predictionType: "epsilon" | "v_prediction"): number[][] {
  const s = new PndmScheduler({ ...SD15, prediction_type: predictionType });
  s.setTimesteps(4);
  let x = filled(2, 1);
  const out: number[][] = [];
  s.timesteps.forEach((t, k) => {
    const eps = Float32Array.from([0.1 * (k + 1), 0.1 * (k + 1) + 0.05]);
    x = s.step(eps, t, x).prevSample;
    out.push(Array.from(x));
  });
  return out;
}

describe("PNDM (PLMS)", () => {
  it("has diffusers' PNDMScheduler defaults and is picked for SD 1.5's config", () => {
    const s = new PndmScheduler();
    assert.equal(s.config.timestep_spacing, "leading");
    assert.equal(s.config.set_alpha_to_one, false);
    assert.equal(s.initNoiseSigma, 1);
    assert.equal(createScheduler(null, SD15).name, "pndm");
  });

  it("repeats the second timestep: n steps, n + 1 model calls", () => {
    const s = new PndmScheduler(SD15);
    s.setTimesteps(4);
    assert.deepEqual(s.timesteps, [751, 501, 501, 251, 1]);
    s.setTimesteps(1);
    assert.deepEqual(s.timesteps, [1]);
    const x = filled(3, 2);
    assert.equal(s.scaleModelInput(x, 1), x);
  });

  it("epsilon: matches diffusers' PLMS values step by step", () => {
    const expected = [
      [2.090855598449707, 2.0254886150360107],
      [2.0254886150360107, 1.960121512413025],
      [2.8631930351257324, 2.7230684757232666],
      [3.221287250518799, 3.0176916122436523],
      [3.21553111076355, 3.0112414360046387],
    ];
    run("epsilon").forEach((row, i) => allClose(row, expected[i]!, 1e-5, 1e-6, `step ${i}`));
  });

  it("v-prediction: matches diffusers' PLMS values step by step", () => {
    const expected = [
      [0.9203336238861084, 0.904903769493103],
      [0.904903769493103, 0.8894739151000977],
      [0.671093761920929, 0.6370466947555542],
      [0.3458026647567749, 0.2901958227157593],
      [0.33864980936050415, 0.2824404835700989],
    ];
    run("v_prediction").forEach((row, i) => allClose(row, expected[i]!, 1e-5, 1e-6, `step ${i}`));
  });

  it("setTimesteps resets the multistep history", () => {
    const s = new PndmScheduler(SD15);
    s.setTimesteps(4);
    s.step(filled(2, 0.3), 751, filled(2, 1));
    s.setTimesteps(4);
    const a = s.step(filled(2, 0.1), 751, filled(2, 1)).prevSample;
    const fresh = new PndmScheduler(SD15);
    fresh.setTimesteps(4);
    assert.deepEqual(a, fresh.step(filled(2, 0.1), 751, filled(2, 1)).prevSample);
  });
});
