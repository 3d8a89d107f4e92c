import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { ValidationError } from "../../src/errors/omni-error.js";
import { DpmSolverMultistepScheduler } from "../../src/schedulers/dpm-solver-multistep.js";
import { SD_CONFIG, allClose, close, filled } from "./helpers.js";

/** Independent DDIM (eta = 0) update from t to prev, straight from alpha_bar. */
function ddimUpdate(ac: Float64Array, t: number, prev: number, x: number, eps: number): number {
  const a = ac[t]!;
  const ap = ac[prev]!;
  const x0 = (x - Math.sqrt(1 - a) * eps) / Math.sqrt(a);
  return Math.sqrt(ap) * x0 + Math.sqrt(1 - ap) * eps;
}

describe("DPM-Solver++ 2M", () => {
  it("linspace lays out n+1 points and drops t=0: 4 steps → 999, 749, 500, 250", () => {
    const s = new DpmSolverMultistepScheduler(SD_CONFIG);
    s.setTimesteps(4);
    assert.deepEqual(s.timesteps, [999, 749, 500, 250]);
    assert.equal(s.sigmas.length, 5);
    assert.equal(s.sigmas[4], 0);
    close(s.sigmas[2]!, Math.sqrt((1 - s.alphasCumprod[500]!) / s.alphasCumprod[500]!), 1e-12);
    assert.equal(s.initNoiseSigma, 1);
  });

  it("leading uses T // (n+1): 50 steps with offset 1 → 951, 932, 913, …", () => {
    const s = new DpmSolverMultistepScheduler({ ...SD_CONFIG, timestep_spacing: "leading", steps_offset: 1 });
    s.setTimesteps(50);
    assert.deepEqual(s.timesteps.slice(0, 3), [951, 932, 913]);
    assert.equal(s.timesteps[49], 20);
  });

  it("trailing 4 steps → 999, 749, 499, 249", () => {
    const s = new DpmSolverMultistepScheduler({ ...SD_CONFIG, timestep_spacing: "trailing" });
    s.setTimesteps(4);
    assert.deepEqual(s.timesteps, [999, 749, 499, 249]);
  });

  it("first step is the first-order (DDIM-like) update", () => {
    const s = new DpmSolverMultistepScheduler(SD_CONFIG);
    s.setTimesteps(4);
    const r = s.step(filled(1, 0.5), 999, filled(1, 1.2));
    close(r.prevSample[0]!, ddimUpdate(s.alphasCumprod, 999, 749, 1.2, 0.5), 1e-5);
  });

  it("second step adds the midpoint correction from the previous x0 (hand formula)", () => {
    const s = new DpmSolverMultistepScheduler(SD_CONFIG);
    s.setTimesteps(4);
    const ac = s.alphasCumprod;
    const x1 = s.step(filled(1, 0.5), 999, filled(1, 1.2)).prevSample;
    const r = s.step(filled(1, -0.3), 749, x1);

    const al = (t: number) => Math.sqrt(ac[t]!);
    const sg = (t: number) => Math.sqrt(1 - ac[t]!);
    const lam = (t: number) => Math.log(al(t)) - Math.log(sg(t));
    const m1 = (1.2 - sg(999) * 0.5) / al(999);
    const m0 = (x1[0]! - sg(749) * -0.3) / al(749);
    const h = lam(500) - lam(749);
    const r0 = (lam(749) - lam(999)) / h;
    const d1 = (m0 - m1) / r0;
    const expected = (sg(500) / sg(749)) * x1[0]! - al(500) * (Math.exp(-h) - 1) * m0 - 0.5 * al(500) * (Math.exp(-h) - 1) * d1;
    close(r.predOriginalSample[0]!, m0, 1e-5);
    close(r.prevSample[0]!, expected, 1e-5);
  });

  it("heun solver_type uses the ((e^-h - 1)/h + 1) weight", () => {
    const mid = new DpmSolverMultistepScheduler(SD_CONFIG);
    const heun = new DpmSolverMultistepScheduler({ ...SD_CONFIG, solver_type: "heun" });
    for (const s of [mid, heun]) s.setTimesteps(4);
    const a = mid.step(filled(1, 0.5), 999, filled(1, 1.2)).prevSample;
    const b = heun.step(filled(1, 0.5), 999, filled(1, 1.2)).prevSample;
    assert.equal(a[0], b[0]);
    assert.notEqual(mid.step(filled(1, -0.3), 749, a).prevSample[0], heun.step(filled(1, -0.3), 749, b).prevSample[0]);
  });

  it("the final step (to sigma 0) is first order and returns x0 exactly, also for n >= 15", () => {
    for (const n of [4, 20]) {
      const s = new DpmSolverMultistepScheduler(SD_CONFIG);
      s.setTimesteps(n);
      let x = filled(1, 1.5);
      let last = { prevSample: x, predOriginalSample: x };
      for (const t of s.timesteps) {
        last = s.step(filled(1, 0.2), t, x);
        x = last.prevSample;
      }
      close(last.prevSample[0]!, last.predOriginalSample[0]!, 1e-6);
    }
  });

  it("solver_order 1 is DDIM at every step", () => {
    const s = new DpmSolverMultistepScheduler({ ...SD_CONFIG, solver_order: 1 });
    s.setTimesteps(4);
    const x1 = s.step(filled(1, 0.5), 999, filled(1, 1.2)).prevSample;
    const x2 = s.step(filled(1, -0.3), 749, x1).prevSample;
    close(x2[0]!, ddimUpdate(s.alphasCumprod, 749, 500, x1[0]!, -0.3), 1e-5);
  });

  it("use_karras_sigmas: full-range Karras sigmas, rounded integer timesteps", () => {
    const s = new DpmSolverMultistepScheduler({ ...SD_CONFIG, use_karras_sigmas: true });
    s.setTimesteps(10);
    assert.deepEqual(s.timesteps, [999, 916, 815, 687, 523, 327, 146, 41, 7, 0]);
    allClose(s.sigmas.slice(0, 3), [14.614641, 9.1029281, 5.478392], 1e-6);
    assert.equal(s.sigmas[10], 0);
  });

  it("v_prediction converts through alpha_t, sigma_t", () => {
    const s = new DpmSolverMultistepScheduler({ ...SD_CONFIG, prediction_type: "v_prediction" });
    s.setTimesteps(4);
    const a = Math.sqrt(s.alphasCumprod[999]!);
    const sg = Math.sqrt(1 - s.alphasCumprod[999]!);
    const r = s.step(filled(1, 0.2), 999, filled(1, 0.3));
    close(r.predOriginalSample[0]!, a * 0.3 - sg * 0.2, 1e-5);
  });

  it("lambda_min_clipped trims the low-SNR end of the schedule", () => {
    const s = new DpmSolverMultistepScheduler({ beta_schedule: "squaredcos_cap_v2", lambda_min_clipped: -5.1 });
    s.setTimesteps(10);
    assert.ok(s.timesteps[0]! < 999);
    const ac = s.alphasCumprod[s.timesteps[0]!]!;
    assert.ok(0.5 * Math.log(ac / (1 - ac)) >= -5.1);
  });

  it("accepts sibling solvers' configs like diffusers, rejects what it can't run", () => {
    const s = new DpmSolverMultistepScheduler({ ...SD_CONFIG, solver_type: "bh2", _class_name: "UniPCMultistepScheduler" } as never);
    assert.equal(s.config.solver_type, "midpoint");
    for (const bad of [{ algorithm_type: "dpmsolver" }, { solver_order: 3 }, { prediction_type: "flow_prediction" }]) {
      assert.throws(() => new DpmSolverMultistepScheduler({ ...SD_CONFIG, ...bad } as never), ValidationError, JSON.stringify(bad));
    }
  });

  it("an unknown first timestep falls back to the last step (diffusers behaviour)", () => {
    const s = new DpmSolverMultistepScheduler(SD_CONFIG);
    s.setTimesteps(4);
    const r = s.step(filled(1, 0.2), 123, filled(1, 1));
    close(r.prevSample[0]!, r.predOriginalSample[0]!, 1e-6);
  });
});
