/**
 * Properties every sampler must hold on every noise schedule it can meet: for each registered sampler ×
 * beta schedule × prediction type it supports × timestep spacing × 1…50 steps, a full sampling loop completes
 * (one `step` per timestep, never "all steps are done"), the output is finite, the timesteps are valid training
 * timesteps in descending order, and the sigmas (where the sampler has them) end at 0.
 *
 * `dpmpp_2m_karras` on `squaredcos_cap_v2` (the shipped model's schedule) failed this from 6 steps on: its
 * rounded Karras timesteps repeat (999, 999, 998, ...) and a timestep lookup started the loop one step late.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { createScheduler, SCHEDULER_NAMES } from "../../src/schedulers/index.js";
import { BETA_SCHEDULES, TIMESTEP_SPACINGS, type PredictionType } from "../../src/schedulers/scheduler-config.js";
import { DdimScheduler } from "../../src/schedulers/ddim.js";
import { DpmSolverMultistepScheduler } from "../../src/schedulers/dpm-solver-multistep.js";
import { EulerDiscreteScheduler } from "../../src/schedulers/euler-discrete.js";
import { EulerAncestralScheduler } from "../../src/schedulers/euler-ancestral.js";
import { FlowMatchEulerScheduler } from "../../src/schedulers/flow-match-euler.js";
import { LcmScheduler } from "../../src/schedulers/lcm.js";
import { PndmScheduler } from "../../src/schedulers/pndm.js";
import type { Scheduler, SchedulerConfig } from "../../src/schedulers/types.js";
import { seededRng } from "./helpers.js";

const T = 1000;
const MAX_STEPS = 50;
/** Samplers whose timesteps are integer training steps (the others' are fractional). */
const INTEGER_TIMESTEPS = new Set(["ddim", "dpmpp_2m", "dpmpp_2m_karras", "lcm", "pndm"]);

const PREDICTION_TYPES: Record<string, readonly PredictionType[]> = {
  ddim: DdimScheduler.predictionTypes,
  dpmpp_2m: DpmSolverMultistepScheduler.predictionTypes,
  dpmpp_2m_karras: DpmSolverMultistepScheduler.predictionTypes,
  euler: EulerDiscreteScheduler.predictionTypes,
  euler_karras: EulerDiscreteScheduler.predictionTypes,
  euler_a: EulerAncestralScheduler.predictionTypes,
  euler_ancestral: EulerAncestralScheduler.predictionTypes,
  lcm: LcmScheduler.predictionTypes,
  pndm: PndmScheduler.predictionTypes,
  flow_euler: FlowMatchEulerScheduler.predictionTypes,
};

/** A stand-in model: a fixed linear map of its input, so every prediction type gets finite, bounded outputs. */
function model(input: Float32Array, predictionType: PredictionType): Float32Array {
  const out = new Float32Array(input.length);
  const k = predictionType === "sample" ? 0.1 : 0.5;
  for (let i = 0; i < out.length; i++) out[i] = k * Math.tanh(input[i]!) + 0.01 * (i % 3);
  return out;
}

/** Runs one full loop; returns a description of the first property it broke, or null. */
function runLoop(s: Scheduler, n: number, predictionType: PredictionType): string | null {
  s.setTimesteps(n);
  const ts = s.timesteps;
  // PLMS repeats its second timestep: n steps are n + 1 model calls.
  const calls = s.name === "pndm" && n > 1 ? n + 1 : n;
  if (ts.length !== calls) return `${ts.length} timesteps for ${n} steps`;
  // Flow matching feeds sigma × T, so its first timestep is T itself (diffusers does the same).
  const top = s.name === "flow_euler" ? T : T - 1;
  for (const [i, t] of ts.entries()) {
    if (!Number.isFinite(t) || t < 0 || t > top) return `timestep ${i} is ${t}, outside [0, ${top}]`;
    if (INTEGER_TIMESTEPS.has(s.name) && !Number.isInteger(t)) return `timestep ${i} is ${t}, not an integer`;
    if (i > 0 && t > ts[i - 1]!) return `timesteps rise at ${i}: ${ts[i - 1]} → ${t}`;
  }
  if (s.sigmas.length) {
    if (s.sigmas.length !== n + 1) return `${s.sigmas.length} sigmas for ${n} steps`;
    if (s.sigmas[n] !== 0) return `last sigma is ${s.sigmas[n]}, not 0`;
  }
  const rng = seededRng(n);
  let x: Float32Array = rng.randn(new Float32Array(6)).map((v) => v * s.initNoiseSigma);
  for (const t of ts) {
    const input = s.scaleModelInput(x, t);
    x = s.step(model(input, predictionType), t, x, rng).prevSample;
  }
  if (!x.every(Number.isFinite)) return `non-finite output ${Array.from(x).join(", ")}`;
  return null;
}

for (const name of SCHEDULER_NAMES) {
  test(`${name}: the loop completes on every schedule, prediction type, spacing and 1…${MAX_STEPS} steps`, () => {
    const failures: string[] = [];
    let runs = 0;
    for (const beta_schedule of BETA_SCHEDULES) {
      for (const prediction_type of PREDICTION_TYPES[name]!) {
        for (const timestep_spacing of TIMESTEP_SPACINGS) {
          const config: SchedulerConfig = { num_train_timesteps: T, beta_schedule, prediction_type, timestep_spacing };
          for (let n = 1; n <= MAX_STEPS; n++) {
            runs++;
            let why: string | null;
            try {
              why = runLoop(createScheduler(name, config), n, prediction_type);
            } catch (err) {
              why = `threw ${(err as Error).message}`;
            }
            if (why) failures.push(`${beta_schedule}/${prediction_type}/${timestep_spacing}/${n} steps: ${why}`);
          }
        }
      }
    }
    assert.deepEqual(failures.slice(0, 8), [], `${failures.length} of ${runs} loops failed`);
  });
}

test("dpmpp_2m_karras on the shipped model's schedule walks every Karras sigma once, in order (diffusers' step index)", () => {
  const s = createScheduler("dpmpp_2m_karras", { beta_schedule: "squaredcos_cap_v2", prediction_type: "v_prediction", timestep_spacing: "trailing" });
  s.setTimesteps(6);
  // The rounded timesteps repeat at the top of a cosine schedule (diffusers gives the same); the sigmas do not.
  assert.deepEqual(s.timesteps.slice(0, 2), [999, 999]);
  assert.equal(new Set(s.sigmas).size, s.sigmas.length, "distinct sigmas");
  let x: Float32Array = new Float32Array([1, -1, 0.5]);
  const seen: number[] = [];
  for (const t of s.timesteps) {
    const r = s.step(new Float32Array([0.1, 0.2, 0.3]), t, x);
    x = r.prevSample;
    seen.push(t);
  }
  assert.deepEqual(seen, s.timesteps);
  assert.throws(() => s.step(new Float32Array(3), 0, x), /all .*steps are done/, "a seventh step is refused");
});
