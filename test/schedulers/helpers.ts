/** Shared test helpers for the scheduler tests: tolerances, a seeded noise source, oracle models. */
import assert from "node:assert/strict";
import { alphasCumprod, interp, makeBetas } from "../../src/schedulers/math.js";
import { resolveConfig, BASE_DEFAULTS, type PredictionType } from "../../src/schedulers/scheduler-config.js";
import type { NoiseSource, Scheduler, SchedulerConfig } from "../../src/schedulers/types.js";

/** Stable Diffusion 1.x/2.x noise schedule. */
export const SD_CONFIG = { beta_start: 0.00085, beta_end: 0.012, beta_schedule: "scaled_linear" } as const satisfies SchedulerConfig;

/** Asserts |actual - expected| <= rel * max(|expected|, floor). */
export function close(actual: number, expected: number, rel = 1e-5, floor = 1e-6, msg = ""): void {
  const tol = rel * Math.max(Math.abs(expected), floor);
  assert.ok(Math.abs(actual - expected) <= tol, `${msg} expected ${expected}, got ${actual} (tol ${tol})`);
}

/** Element-wise {@link close}. */
export function allClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rel = 1e-5, floor = 1e-6, msg = ""): void {
  assert.equal(actual.length, expected.length, `${msg} length`);
  for (let i = 0; i < expected.length; i++) close(actual[i]!, expected[i]!, rel, floor, `${msg}[${i}]`);
}

/** Max |a - b| over two arrays. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Deterministic N(0,1) source (mulberry32 + Box-Muller). */
export function seededRng(seed: number): NoiseSource & { calls: number } {
  let s = seed >>> 0;
  const uniform = (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const src = {
    calls: 0,
    randn(out: Float32Array): Float32Array {
      src.calls++;
      for (let i = 0; i < out.length; i++) {
        const u1 = Math.max(uniform(), 1e-12);
        const u2 = uniform();
        out[i] = Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
      }
      return out;
    },
  };
  return src;
}

/** A noise source that always returns the same constant (to check how noise enters a step). */
export function constRng(value: number): NoiseSource {
  return { randn: (out) => out.fill(value) };
}

/** Filled Float32Array. */
export function filled(n: number, v: number): Float32Array {
  return new Float32Array(n).fill(v);
}

/** A fixed "clean latent" with a spread of values. */
export function makeX0(n = 16): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => Math.sin(i * 1.7) * 0.8 + 0.1);
}

/**
 * An oracle VP-trained model: given the (scaled) model input x_in = sqrt(ab) x0 + sqrt(1 - ab) eps at
 * timestep t, returns exactly the epsilon / v / x0 consistent with the known clean sample x0. It uses
 * only the training noise schedule, never the scheduler under test: a sign or scale bug there
 * (in scaleModelInput, the x0 conversion or the update) makes the loop miss x0.
 * Fractional t is mapped to alpha_bar through log-sigma interpolation (the inverse of `_sigma_to_t`).
 */
export function vpOracle(config: SchedulerConfig, prediction: PredictionType, x0: Float32Array): (input: Float32Array, t: number) => Float32Array {
  const ac = alphasCumprod(makeBetas(resolveConfig(BASE_DEFAULTS, config, [prediction])));
  const grid = Array.from(ac, (_, i) => i);
  const logSig = Array.from(ac, (a) => 0.5 * Math.log((1 - a) / a));
  return (input, t) => {
    const sigma = Math.exp(interp(t, grid, logSig));
    const ab = 1 / (sigma * sigma + 1);
    const a = Math.sqrt(ab);
    const s = Math.sqrt(1 - ab);
    const out = new Float32Array(input.length);
    for (let i = 0; i < input.length; i++) {
      const eps = (input[i]! - a * x0[i]!) / s;
      out[i] = prediction === "epsilon" ? eps : prediction === "sample" ? x0[i]! : a * eps - s * x0[i]!;
    }
    return out;
  };
}

/** An oracle flow-matching model: x = (1 - sigma) x0 + sigma noise with sigma = t / T, so v = (x - x0) / sigma. */
export function flowOracle(x0: Float32Array, T = 1000): (input: Float32Array, t: number) => Float32Array {
  return (input, t) => {
    const sigma = t / T;
    return Float32Array.from(input, (x, i) => (x - x0[i]!) / sigma);
  };
}

/** Runs the standard denoising loop a pipeline runs, from initNoiseSigma-scaled noise. */
export function runLoop(
  scheduler: Scheduler,
  model: (input: Float32Array, t: number) => Float32Array,
  n: number,
  steps: number,
  rng: NoiseSource,
): Float32Array {
  scheduler.setTimesteps(steps);
  let x: Float32Array = rng.randn(new Float32Array(n)).map((v) => v * scheduler.initNoiseSigma);
  for (const t of scheduler.timesteps) {
    const input = scheduler.scaleModelInput(x, t);
    x = scheduler.step(model(input, t), t, x, rng).prevSample;
  }
  return x;
}
