import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { ValidationError } from "../../src/errors/omni-error.js";
import { FlowMatchEulerScheduler, calculateShift } from "../../src/schedulers/flow-match-euler.js";
import { allClose, close, constRng, filled } from "./helpers.js";

describe("flow-matching Euler", () => {
  it("shift 1: sigmas linear from 1 to 1/T, timesteps = sigma * T, final 0", () => {
    const s = new FlowMatchEulerScheduler({});
    s.setTimesteps(4);
    allClose(s.timesteps, [1000, 667, 334, 1], 1e-12);
    allClose(s.sigmas, [1, 0.667, 0.334, 0.001, 0], 1e-12, 1e-3);
    assert.equal(s.initNoiseSigma, 1);
    assert.equal(s.config.prediction_type, "flow_prediction");
  });

  it("SD3 shift 3 (diffusers re-shifts the already-shifted sigma_min)", () => {
    const s = new FlowMatchEulerScheduler({ _class_name: "FlowMatchEulerDiscreteScheduler", shift: 3.0 });
    s.setTimesteps(10);
    allClose(
      s.timesteps,
      [1000, 960.12931, 913.34895, 857.69231, 790.36827, 707.27848, 602.15054, 464.87603, 278.04878, 8.9285714],
      1e-6,
    );
    close(s.sigmaMin, 0.003 / 1.002, 1e-12);
  });

  it("step is x + (sigma_next - sigma) * v, x0 = x - sigma * v", () => {
    const s = new FlowMatchEulerScheduler({ shift: 3 });
    s.setTimesteps(10);
    const [s0, s1] = s.sigmas as [number, number];
    const x = filled(2, 0.7);
    assert.equal(s.scaleModelInput(x, s.timesteps[0]!), x);
    const r = s.step(filled(2, -0.4), s.timesteps[0]!, x);
    close(r.prevSample[0]!, 0.7 + (s1 - s0) * -0.4, 1e-6);
    close(r.predOriginalSample[0]!, 0.7 - s0 * -0.4, 1e-6);
  });

  it("dynamic shifting (Flux) needs mu and applies exp(mu) / (exp(mu) + (1/t - 1))", () => {
    const s = new FlowMatchEulerScheduler({ use_dynamic_shifting: true, shift: 3 });
    assert.throws(() => s.setTimesteps(4), (e: unknown) => e instanceof ValidationError && e.field === "mu");
    const mu = calculateShift(4096);
    close(mu, 1.15, 1e-12);
    close(calculateShift(256), 0.5, 1e-12);
    s.setTimesteps(4, { mu });
    allClose(s.sigmas, [1, 0.86349744, 0.6129789, 0.0031513916, 0], 1e-6);
  });

  it("shift_terminal stretches the schedule to end there", () => {
    const s = new FlowMatchEulerScheduler({ shift: 3, shift_terminal: 0.1 } as never);
    s.setTimesteps(8);
    close(s.sigmas[7]!, 0.1, 1e-12);
    close(s.sigmas[0]!, 1, 1e-12);
  });

  it("stochastic_sampling re-noises the predicted x0 to sigma_next", () => {
    const s = new FlowMatchEulerScheduler({ stochastic_sampling: true } as never);
    s.setTimesteps(4);
    const r = s.step(filled(1, 0.5), 1000, filled(1, 0.2), constRng(2));
    const x0 = 0.2 - 1 * 0.5;
    close(r.prevSample[0]!, (1 - 0.667) * x0 + 0.667 * 2, 1e-6);
  });

  it("addNoise is sigma * noise + (1 - sigma) * x0 (diffusers scale_noise)", () => {
    const s = new FlowMatchEulerScheduler({});
    s.setTimesteps(4);
    close(s.addNoise(filled(1, 0.5), filled(1, 2), 334)[0]!, 0.334 * 2 + 0.666 * 0.5, 1e-6);
  });

  it("rejects a non-flow prediction_type and a bad shift", () => {
    assert.throws(() => new FlowMatchEulerScheduler({ prediction_type: "epsilon" }), ValidationError);
    assert.throws(() => new FlowMatchEulerScheduler({ shift: 0 }), ValidationError);
  });
});
