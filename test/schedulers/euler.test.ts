import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { ValidationError } from "../../src/errors/omni-error.js";
import { EulerAncestralScheduler, ancestralSigmas } from "../../src/schedulers/euler-ancestral.js";
import { EulerDiscreteScheduler } from "../../src/schedulers/euler-discrete.js";
import { SD_CONFIG, allClose, close, constRng, filled, seededRng } from "./helpers.js";

const SIGMA_MAX = 14.614641;

describe("Euler discrete", () => {
  it("SD, 10 steps linspace: fractional-free timesteps, interpolated sigmas + final 0", () => {
    const s = new EulerDiscreteScheduler(SD_CONFIG);
    s.setTimesteps(10);
    assert.deepEqual(s.timesteps, [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]);
    allClose(
      s.sigmas,
      [14.614641, 7.8398829, 4.6091741, 2.9183071, 1.9501615, 1.3449278, 0.93235797, 0.62497692, 0.36865774, 0.029167157, 0],
      1e-6,
      1e-9,
    );
    // linspace/trailing: sigma_max; leading: sqrt(sigma_max^2 + 1).
    close(s.initNoiseSigma, SIGMA_MAX, 1e-6);
    const lead = new EulerDiscreteScheduler({ ...SD_CONFIG, timestep_spacing: "leading", steps_offset: 1 });
    lead.setTimesteps(50);
    assert.deepEqual(lead.timesteps.slice(0, 2), [981, 961]);
    close(lead.initNoiseSigma, Math.sqrt(lead.sigmas[0]! ** 2 + 1), 1e-9);
  });

  it("7 steps keep numpy's fractional linspace timesteps and interpolate sigma between table entries", () => {
    const s = new EulerDiscreteScheduler(SD_CONFIG);
    s.setTimesteps(7);
    allClose(s.timesteps, [999, 832.5, 666, 499.5, 333, 166.5, 0], 1e-12);
    const t = s as unknown as { table: { trainSigmas: Float64Array } };
    const tab = t.table.trainSigmas;
    close(s.sigmas[1]!, (tab[832]! + tab[833]!) / 2, 1e-12);
  });

  it("scaleModelInput divides by sqrt(sigma^2 + 1); step is x + (sigma_next - sigma) * eps", () => {
    const s = new EulerDiscreteScheduler(SD_CONFIG);
    s.setTimesteps(10);
    const x = filled(2, 2);
    close(s.scaleModelInput(x, 999)[0]!, 2 / Math.sqrt(SIGMA_MAX ** 2 + 1), 1e-6);
    assert.equal(x[0], 2);
    const { prevSample, predOriginalSample } = s.step(filled(2, 0.1), 999, x);
    close(prevSample[0]!, 2 + 0.1 * (7.8398829 - SIGMA_MAX), 1e-5);
    close(predOriginalSample[0]!, 2 - SIGMA_MAX * 0.1, 1e-5);
    // The step index advanced: the next scaleModelInput uses sigma[1].
    close(s.scaleModelInput(x, 888)[0]!, 2 / Math.sqrt(7.8398829 ** 2 + 1), 1e-6);
  });

  it("use_karras_sigmas: Karras sigmas over the schedule's range, fractional timesteps via _sigma_to_t", () => {
    const s = new EulerDiscreteScheduler({ ...SD_CONFIG, use_karras_sigmas: true });
    s.setTimesteps(10);
    allClose(
      s.sigmas,
      [14.614641, 9.1029281, 5.478392, 3.168603, 1.749417, 0.91407225, 0.4469182, 0.2013983, 0.081910237, 0.029167157, 0],
      1e-6,
      1e-9,
    );
    allClose(
      s.timesteps,
      [999, 916.28391, 815.04468, 687.15274, 523.19808, 327.14599, 145.93807, 40.856432, 6.7322965, 0],
      1e-6,
      1e-3,
    );
    // Fractional timesteps round-trip through step().
    for (const t of s.timesteps) s.step(filled(1, 0), t, filled(1, 1));
  });

  it("final_sigmas_type sigma_min ends on the training sigma_min", () => {
    const s = new EulerDiscreteScheduler({ ...SD_CONFIG, final_sigmas_type: "sigma_min" });
    s.setTimesteps(4);
    close(s.sigmas[4]!, 0.029167157, 1e-6);
  });

  it("rescale_betas_zero_snr pins alpha_bar[T-1] to 2^-24 (sigma ≈ 4096)", () => {
    const s = new EulerDiscreteScheduler({ ...SD_CONFIG, rescale_betas_zero_snr: true, timestep_spacing: "trailing" });
    s.setTimesteps(4);
    close(s.sigmas[0]!, Math.sqrt((1 - 2 ** -24) / 2 ** -24), 1e-9);
  });

  it("rejects unknown timesteps and exhausted schedules", () => {
    const s = new EulerDiscreteScheduler(SD_CONFIG);
    assert.throws(() => s.scaleModelInput(filled(1, 0), 999), ValidationError);
    s.setTimesteps(2);
    assert.throws(() => s.step(filled(1, 0), 500, filled(1, 0)), (e: unknown) => e instanceof ValidationError && e.field === "timestep");
    s.step(filled(1, 0), 999, filled(1, 0));
    s.step(filled(1, 0), 0, filled(1, 0));
    assert.throws(() => s.step(filled(1, 0), 0, filled(1, 0)), ValidationError);
    // setTimesteps resets the run.
    s.setTimesteps(2);
    s.step(filled(1, 0), 999, filled(1, 0));
  });

  it("addNoise is x0 + sigma(t) * noise", () => {
    const s = new EulerDiscreteScheduler(SD_CONFIG);
    s.setTimesteps(10);
    close(s.addNoise(filled(1, 0.5), filled(1, 2), 888)[0]!, 0.5 + 2 * 7.8398829, 1e-6);
  });
});

describe("Euler ancestral", () => {
  it("sigma 14.6146 → 11.4769 splits into sigma_up 7.1055, sigma_down 9.0129", () => {
    const { sigmaUp, sigmaDown } = ancestralSigmas(14.6146, 11.4769);
    close(sigmaUp, 7.1055, 1e-4);
    close(sigmaDown, 9.0129, 1e-4);
    close(sigmaUp ** 2 + sigmaDown ** 2, 11.4769 ** 2, 1e-12);
    assert.deepEqual(ancestralSigmas(3, 0), { sigmaUp: 0, sigmaDown: 0 });
  });

  it("step = Euler to sigma_down plus sigma_up * noise", () => {
    const s = new EulerAncestralScheduler(SD_CONFIG);
    s.setTimesteps(10);
    const sig = s.sigmas;
    const { sigmaUp, sigmaDown } = ancestralSigmas(sig[0]!, sig[1]!);
    const r = s.step(filled(1, 0.1), 999, filled(1, 2), constRng(0.5));
    close(r.prevSample[0]!, 2 + 0.1 * (sigmaDown - sig[0]!) + 0.5 * sigmaUp, 1e-5);
  });

  it("needs an rng for noisy steps but not for the last one", () => {
    const s = new EulerAncestralScheduler(SD_CONFIG);
    s.setTimesteps(2);
    assert.throws(() => s.step(filled(1, 0), 999, filled(1, 0)), (e: unknown) => e instanceof ValidationError && e.field === "rng");
    s.step(filled(1, 0), 999, filled(1, 0), seededRng(1));
    const rng = seededRng(2);
    s.step(filled(1, 0.3), 0, filled(1, 1));
    assert.equal(rng.calls, 0);
  });

  it("ignores use_karras_sigmas like diffusers' EulerAncestralDiscreteScheduler", () => {
    const s = new EulerAncestralScheduler({ ...SD_CONFIG, use_karras_sigmas: true });
    s.setTimesteps(10);
    assert.equal(s.timesteps[1], 888);
  });
});
