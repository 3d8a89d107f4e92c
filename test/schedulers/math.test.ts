import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { ValidationError } from "../../src/errors/omni-error.js";
import {
  alphasCumprod,
  flowShift,
  interp,
  karrasSigmas,
  linspace,
  makeBetas,
  rescaleZeroTerminalSnr,
  roundHalfEven,
  sigmaToT,
  sigmasFromAlphasCumprod,
  spacedTimesteps,
  timeShift,
  veToX0,
  vpToX0Eps,
} from "../../src/schedulers/math.js";
import { BASE_DEFAULTS, resolveConfig, validateNumSteps } from "../../src/schedulers/scheduler-config.js";
import { indexForTimestep } from "../../src/schedulers/step-index.js";
import type { SchedulerConfig } from "../../src/schedulers/types.js";
import { SD_CONFIG, allClose, close } from "./helpers.js";

const resolved = (c: SchedulerConfig) => resolveConfig(BASE_DEFAULTS, c, ["epsilon", "v_prediction", "sample"]);
const sdAc = alphasCumprod(makeBetas(resolved(SD_CONFIG)));

describe("noise schedules", () => {
  it("SD scaled_linear 0.00085/0.012, T=1000 matches diffusers", () => {
    close(sdAc[999]!, 0.0046601, 1e-4);
    close(sdAc[499]!, 0.27767, 1e-4);
    close(sdAc[0]!, 1 - 0.00085, 1e-9);
    const sig = sigmasFromAlphasCumprod(sdAc);
    close(sig[999]!, 14.61466, 1e-5);
    close(sig[0]!, 0.0291672, 1e-5);
  });

  it("linear (DDPM defaults) schedule", () => {
    const ac = alphasCumprod(makeBetas(resolved({})));
    close(ac[999]!, 4.0358298e-5, 1e-5);
    close(ac[500]!, 0.077796658, 1e-6);
    const betas = makeBetas(resolved({}));
    close(betas[0]!, 0.0001, 1e-12);
    close(betas[999]!, 0.02, 1e-12);
  });

  it("squaredcos_cap_v2 follows the cosine alpha_bar and caps beta at 0.999", () => {
    const betas = makeBetas(resolved({ beta_schedule: "squaredcos_cap_v2" }));
    close(betas[0]!, 4.1284225e-5, 1e-6);
    assert.equal(betas[999], 0.999);
    close(alphasCumprod(betas)[500]!, 0.49228517, 1e-6);
  });

  it("trained_betas override the named schedule", () => {
    const tb = Array.from({ length: 10 }, (_, i) => 0.01 * (i + 1));
    const betas = makeBetas(resolved({ num_train_timesteps: 10, trained_betas: tb, beta_schedule: "scaled_linear" }));
    allClose(betas, tb, 1e-12);
  });

  it("rescale_betas_zero_snr gives zero terminal SNR and keeps alpha_bar[0]", () => {
    const base = makeBetas(resolved(SD_CONFIG));
    const ac = alphasCumprod(rescaleZeroTerminalSnr(base));
    assert.ok(Math.abs(ac[999]!) < 1e-12);
    close(ac[0]!, sdAc[0]!, 1e-9);
    for (let i = 1; i < ac.length; i++) assert.ok(ac[i]! <= ac[i - 1]!);
    const viaConfig = alphasCumprod(makeBetas(resolved({ ...SD_CONFIG, rescale_betas_zero_snr: true })));
    allClose(viaConfig, ac, 1e-12, 1e-12);
  });
});

describe("timestep spacing", () => {
  it("leading + steps_offset=1, 50 steps → 981, 961, …, 21, 1", () => {
    const ts = spacedTimesteps("leading", 1000, 50, 1, true);
    assert.equal(ts.length, 50);
    assert.deepEqual(ts.slice(0, 3), [981, 961, 941]);
    assert.deepEqual(ts.slice(-3), [41, 21, 1]);
    for (let i = 1; i < ts.length; i++) assert.equal(ts[i - 1]! - ts[i]!, 20);
  });

  it("trailing 4 steps → 999, 749, 499, 249", () => {
    assert.deepEqual(spacedTimesteps("trailing", 1000, 4, 0, true), [999, 749, 499, 249]);
  });

  it("trailing always yields exactly n non-negative steps (numpy's arange can yield n+1 ending in -1)", () => {
    for (const n of [61, 103, 121, 201, 333, 1000]) {
      const ts = spacedTimesteps("trailing", 1000, n, 0, true);
      assert.equal(ts.length, n);
      assert.equal(ts[0], 999);
      assert.ok(ts[n - 1]! >= 0);
    }
  });

  it("linspace: DDIM rounds half to even like numpy, Euler keeps fractions", () => {
    assert.deepEqual(spacedTimesteps("linspace", 1000, 5, 0, true), [999, 749, 500, 250, 0]);
    assert.deepEqual(spacedTimesteps("linspace", 1000, 10, 0, true), [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]);
    allClose(spacedTimesteps("linspace", 1000, 7, 0, false), [999, 832.5, 666, 499.5, 333, 166.5, 0], 1e-12);
  });

  it("roundHalfEven / linspace / interp follow numpy", () => {
    assert.deepEqual([0.5, 1.5, 2.5, -0.5, -1.5, 2.4, 2.6].map(roundHalfEven), [0, 2, 2, -0, -2, 2, 3]);
    assert.deepEqual(linspace(0, 1, 1), [0]);
    assert.deepEqual(linspace(0, 1, 5), [0, 0.25, 0.5, 0.75, 1]);
    assert.equal(interp(1.5, [0, 1, 2], [10, 20, 40]), 30);
    assert.equal(interp(-1, [0, 1, 2], [10, 20, 40]), 10);
    assert.equal(interp(5, [0, 1, 2], [10, 20, 40]), 40);
  });
});

describe("Karras sigmas and sigma ↔ t", () => {
  it("karrasSigmas(0.0292, 14.6146, 10, rho=7)", () => {
    allClose(
      karrasSigmas(0.0292, 14.6146, 10),
      [14.6146, 9.1034048, 5.4790267, 3.1692041, 1.749901, 0.91442, 0.44714462, 0.20153187, 0.081980915, 0.0292],
      1e-6,
    );
  });

  it("sigmaToT inverts the training sigmas and interpolates in log-sigma", () => {
    const sig = sigmasFromAlphasCumprod(sdAc);
    const logSig = sig.map(Math.log);
    close(sigmaToT(sig[500]!, logSig), 500, 1e-12);
    close(sigmaToT(sig[999]!, logSig), 999, 1e-12);
    close(sigmaToT(sig[0]!, logSig), 0, 1e-12, 1e-9);
    close(sigmaToT(Math.sqrt(sig[500]! * sig[501]!), logSig), 500.5, 1e-9);
    // Clamped outside the table.
    assert.equal(sigmaToT(1e-6, logSig), 0);
    assert.equal(sigmaToT(100, logSig), 999);
  });

  it("indexForTimestep takes the second of duplicates and tolerates float32 rounding", () => {
    assert.equal(indexForTimestep([999, 500, 500, 0], 500), 2);
    assert.equal(indexForTimestep([999, 500, 0], 500), 1);
    assert.equal(indexForTimestep([999, 832.5123456, 0], Math.fround(832.5123456)), 1);
    assert.equal(indexForTimestep([999, 500, 0], 250), -1);
  });
});

describe("prediction-type conversion", () => {
  const a = Math.sqrt(sdAc[499]!);
  const s = Math.sqrt(1 - sdAc[499]!);

  it("v_prediction → x0 / eps (diffusers formula, hand value)", () => {
    const { x0, eps } = vpToX0Eps("v_prediction", Float32Array.of(0.2), Float32Array.of(0.3), a, s);
    close(x0[0]!, -0.011896934, 1e-5);
    close(eps[0]!, 0.3603588, 1e-5);
  });

  it("every prediction type recovers the true x0 and eps of a forward-noised sample", () => {
    const x0 = 0.7;
    const eps = -1.3;
    const xt = Float32Array.of(a * x0 + s * eps);
    const outputs = { epsilon: eps, sample: x0, v_prediction: a * eps - s * x0 } as const;
    for (const [pt, out] of Object.entries(outputs)) {
      const r = vpToX0Eps(pt as keyof typeof outputs, Float32Array.of(out), xt, a, s);
      close(r.x0[0]!, x0, 1e-5, 1e-6, pt);
      close(r.eps[0]!, eps, 1e-5, 1e-6, pt);
    }
  });

  it("VE (Euler) conversion agrees with the VP one for the unscaled sample", () => {
    const sigma = 3.2;
    const x0 = 0.4;
    const eps = 0.9;
    const ve = Float32Array.of(x0 + sigma * eps);
    const aa = 1 / Math.sqrt(sigma * sigma + 1);
    const ss = sigma * aa;
    close(veToX0("epsilon", Float32Array.of(eps), ve, sigma)[0]!, x0, 1e-5);
    close(veToX0("sample", Float32Array.of(x0), ve, sigma)[0]!, x0, 1e-6);
    close(veToX0("v_prediction", Float32Array.of(aa * eps - ss * x0), ve, sigma)[0]!, x0, 1e-5);
  });

  it("unsupported prediction type throws ValidationError", () => {
    assert.throws(() => vpToX0Eps("flow_prediction", Float32Array.of(0), Float32Array.of(0), 1, 0), ValidationError);
  });
});

describe("flow shifts", () => {
  it("sigma' = shift*s / (1 + (shift-1)*s)", () => {
    close(flowShift(0.5, 3), 0.75, 1e-12);
    close(flowShift(0.001, 3), 0.003 / 1.002, 1e-12);
    assert.equal(flowShift(1, 7), 1);
    assert.equal(flowShift(0.3, 1), 0.3);
  });

  it("time_shift exponential / linear", () => {
    close(timeShift("exponential", 1.15, 1, 0.5), Math.exp(1.15) / (Math.exp(1.15) + 1), 1e-12);
    close(timeShift("linear", 2, 1, 0.25), 2 / (2 + 3), 1e-12);
  });
});

describe("validation", () => {
  it("validateNumSteps rejects n < 1, n > T and non-integers with field num_inference_steps", () => {
    for (const n of [0, -1, 1001, 2.5, Number.NaN]) {
      assert.throws(
        () => validateNumSteps(n, 1000),
        (e: unknown) => e instanceof ValidationError && e.field === "num_inference_steps",
        String(n),
      );
    }
    validateNumSteps(1, 1000);
    validateNumSteps(1000, 1000);
  });

  it("resolveConfig keeps defaults for null/absent keys and rejects bad enums", () => {
    const c = resolved({ beta_schedule: null as never, trained_betas: null, steps_offset: 1, foo: 3 });
    assert.equal(c.beta_schedule, "linear");
    assert.equal(c.steps_offset, 1);
    assert.equal(c.foo, 3);
    for (const bad of [{ beta_schedule: "cosine" }, { timestep_spacing: "even" }, { prediction_type: "flow_prediction" }, { num_train_timesteps: 0 }, { trained_betas: [0.1] }]) {
      assert.throws(
        () => resolved(bad as SchedulerConfig),
        (e: unknown) => e instanceof ValidationError && e.field === "scheduler",
        JSON.stringify(bad),
      );
    }
  });
});
