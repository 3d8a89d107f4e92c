/**
 * `addNoise` (the forward process img2img and inpainting start from) on every registered sampler, against
 * diffusers' definitions: VP samplers (DDIM, PNDM, LCM) sqrt(ᾱ_t)·x0 + sqrt(1−ᾱ_t)·ε; DPM-Solver alpha_t·x0 +
 * sigma_t·ε on its own sigma (the same pair); the Euler family x0 + σ·ε; flow matching (1−σ)·x0 + σ·ε. Then the
 * img2img loop: a run started mid-schedule with `setBeginIndex` takes exactly the tail's steps, repeated rounded
 * timesteps included.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { createScheduler, SCHEDULER_NAMES } from "../../src/schedulers/index.js";
import { alphasCumprod, makeBetas, mixNoise } from "../../src/schedulers/math.js";
import { BETA_SCHEDULES, type ResolvedSchedulerConfig } from "../../src/schedulers/scheduler-config.js";
import { indexForTimestep } from "../../src/schedulers/step-index.js";
import type { SchedulerConfig } from "../../src/schedulers/types.js";
import { strengthSchedule } from "../../src/pipelines/init-image.js";
import { close } from "./helpers.js";

const X0 = new Float32Array([0.5, -1, 0.25]);
const EPS = new Float32Array([2, 0.5, -1]);
const VP = new Set(["ddim", "pndm", "lcm"]);
const VE = new Set(["euler", "euler_karras", "euler_a", "euler_ancestral"]);
const DPM = new Set(["dpmpp_2m", "dpmpp_2m_karras"]);

/** The (a, b) of a·x0 + b·ε diffusers' add_noise uses for `name` at schedule index i (timestep t). */
function expectedPair(name: string, config: ResolvedSchedulerConfig, sigmas: number[], i: number, t: number): [number, number] {
  if (VP.has(name)) {
    const ac = alphasCumprod(makeBetas(config)); // the sampler's resolved config: LCM has its own beta defaults
    return [Math.sqrt(ac[t]!), Math.sqrt(1 - ac[t]!)];
  }
  const s = sigmas[i]!;
  if (VE.has(name)) return [1, s];
  if (DPM.has(name)) return [1 / Math.sqrt(s * s + 1), s / Math.sqrt(s * s + 1)];
  return [1 - s, s]; // flow_euler
}

for (const name of SCHEDULER_NAMES) {
  test(`${name}: addNoise is diffusers' forward process at every timestep of the schedule`, () => {
    for (const beta_schedule of BETA_SCHEDULES) {
      const config: SchedulerConfig = { beta_schedule, prediction_type: name === "flow_euler" ? "flow_prediction" : "epsilon" };
      const s = createScheduler(name, config);
      s.setTimesteps(12);
      assert.equal(typeof s.addNoise, "function", "every built-in sampler can start from an image");
      let lastNoise = Infinity;
      for (const [i, t] of s.timesteps.entries()) {
        const out = s.addNoise!(X0, EPS, t);
        const [a, b] = expectedPair(name, s.config as ResolvedSchedulerConfig, s.sigmas, indexForTimestep(s.timesteps, t), t);
        for (let k = 0; k < X0.length; k++) close(out[k]!, a * X0[k]! + b * EPS[k]!, 1e-5, 1e-6, `${beta_schedule} t=${t} [${k}]`);
        // The noise share never grows along the schedule (repeats of a rounded timestep tie).
        const share = b / Math.max(a, 1e-12);
        assert.ok(share <= lastNoise * (1 + 1e-9), `${beta_schedule}: noise share rises at step ${i}`);
        lastNoise = share;
        if (VP.has(name) || DPM.has(name)) close(a * a + b * b, 1, 1e-9, 1e-9, "variance preserving");
      }
      assert.throws(() => s.addNoise!(X0, new Float32Array(2), s.timesteps[0]!), /length|values/i, "mismatched lengths are refused");
    }
  });
}

test("mixNoise is a·x0 + b·noise and refuses arrays of different lengths", () => {
  assert.deepEqual(Array.from(mixNoise(new Float32Array([1, 2]), new Float32Array([3, 4]), 0.5, 2)), [6.5, 9]);
  assert.throws(() => mixNoise(new Float32Array(2), new Float32Array(3), 1, 1));
});

test("strengthSchedule: floor(steps × strength) steps, at least 1, from the tail", () => {
  const ts = [90, 80, 70, 60, 50, 40, 30, 20, 10, 0];
  assert.deepEqual(strengthSchedule(ts, 10, 1), { timesteps: ts, begin: 0 });
  assert.deepEqual(strengthSchedule(ts, 10, 0.8), { timesteps: ts.slice(2), begin: 2 });
  assert.deepEqual(strengthSchedule(ts, 10, 0.55), { timesteps: ts.slice(5), begin: 5 });
  assert.deepEqual(strengthSchedule(ts, 10, 0.01), { timesteps: [0], begin: 9 }, "0 steps is bumped to 1");
  const plms = [90, 80, 80, 70, 60];
  assert.deepEqual(strengthSchedule(plms, 4, 0.5).timesteps, [80, 70, 60], "PLMS keeps its extra entry, as diffusers' order-1 cut does");
});

test("every sampler run from any begin index takes exactly the tail's steps (repeated Karras timesteps included)", () => {
  const failures: string[] = [];
  for (const name of SCHEDULER_NAMES) {
    const config: SchedulerConfig = { beta_schedule: "squaredcos_cap_v2", prediction_type: name === "flow_euler" ? "flow_prediction" : "v_prediction", timestep_spacing: "trailing" };
    for (const steps of [6, 10]) {
      for (let begin = 1; begin < steps; begin++) {
        const s = createScheduler(name, config);
        s.setTimesteps(steps);
        const tail = s.timesteps.slice(begin);
        s.setBeginIndex?.(begin);
        let x = s.addNoise!(X0, EPS, tail[0]!);
        try {
          for (const t of tail) x = s.step(s.scaleModelInput(x, t).map((v) => 0.1 * v), t, x, { randn: (o) => o.fill(0.1) }).prevSample;
          if (!x.every(Number.isFinite)) failures.push(`${name}/${steps}/${begin}: non-finite`);
        } catch (err) {
          failures.push(`${name}/${steps}/${begin}: ${(err as Error).message}`);
        }
        // Index-tracking samplers have now walked to the end: one more step is refused.
        if (s.setBeginIndex && !/all .*steps are done/.test(String(captured(() => s.step(new Float32Array(3), tail.at(-1)!, x))))) {
          failures.push(`${name}/${steps}/${begin}: the tail did not end the schedule`);
        }
      }
    }
  }
  assert.deepEqual(failures, []);
});

function captured(fn: () => unknown): unknown {
  try {
    fn();
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}
