/**
 * Shared scheduler math (diffusers semantics). diffusers copies these helpers into every scheduler file
 * ("# Copied from ..."); here every sampler imports them from this one module so a fix lands everywhere. The config
 * they read and the checks they share are in scheduler-config.ts.
 *
 * Numbers are computed in float64 (diffusers uses float32 torch/numpy); the difference is far below any
 * tolerance a model cares about, and it keeps the schedule bit-for-bit reproducible across platforms.
 */
import { ValidationError } from "../errors/omni-error.js";
import type { SchedulerConfig } from "./types.js";
import { assertSameLength, type PredictionType, type ResolvedSchedulerConfig, type TimestepSpacing } from "./scheduler-config.js";

/** numpy's `np.linspace(start, stop, num)` (endpoint included; `num == 1` gives `[start]`). */
export function linspace(start: number, stop: number, num: number): number[] {
  if (num === 1) return [start];
  const step = (stop - start) / (num - 1);
  const out = new Array<number>(num);
  for (let i = 0; i < num; i++) out[i] = start + i * step;
  // numpy pins the endpoint exactly; i*step can miss it by an ulp.
  out[num - 1] = stop;
  return out;
}

/** numpy's `np.round`: half to even. `Math.round` rounds half up, which moves e.g. 0.5 → 1 where numpy gives 0. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** numpy's `np.interp(x, xp, fp)` for increasing `xp`; clamps outside the range like numpy does. */
export function interp(x: number, xp: ArrayLike<number>, fp: ArrayLike<number>): number {
  const n = xp.length;
  if (x <= xp[0]!) return fp[0]!;
  if (x >= xp[n - 1]!) return fp[n - 1]!;
  let lo = 0;
  let hi = n - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (xp[mid]! <= x) lo = mid;
    else hi = mid;
  }
  const x0 = xp[lo]!;
  const x1 = xp[hi]!;
  const w = (x - x0) / (x1 - x0);
  return fp[lo]! + w * (fp[hi]! - fp[lo]!);
}

/**
 * diffusers' `betas_for_alpha_bar` with the cosine ("squaredcos_cap_v2", Nichol & Dhariwal) transform:
 * betas that make the cumulative product follow cos²; capped at `maxBeta` so the last step stays invertible.
 */
export function betasForAlphaBar(numTrainTimesteps: number, maxBeta = 0.999): Float64Array {
  const alphaBar = (t: number): number => Math.cos(((t + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
  const betas = new Float64Array(numTrainTimesteps);
  for (let i = 0; i < numTrainTimesteps; i++) {
    const t1 = i / numTrainTimesteps;
    const t2 = (i + 1) / numTrainTimesteps;
    betas[i] = Math.min(1 - alphaBar(t2) / alphaBar(t1), maxBeta);
  }
  return betas;
}

/**
 * diffusers' `rescale_zero_terminal_snr` (Lin et al. 2023, Algorithm 1): shifts and scales sqrt(alpha_bar)
 * so the last timestep has exactly zero signal, keeping the first one unchanged.
 */
export function rescaleZeroTerminalSnr(betas: Float64Array): Float64Array {
  const n = betas.length;
  const sqrtAb = new Float64Array(n);
  let prod = 1;
  for (let i = 0; i < n; i++) {
    prod *= 1 - betas[i]!;
    sqrtAb[i] = Math.sqrt(prod);
  }
  const first = sqrtAb[0]!;
  const last = sqrtAb[n - 1]!;
  const ab = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const s = ((sqrtAb[i]! - last) * first) / (first - last);
    ab[i] = s * s;
  }
  const out = new Float64Array(n);
  out[0] = 1 - ab[0]!;
  for (let i = 1; i < n; i++) out[i] = 1 - ab[i]! / ab[i - 1]!;
  return out;
}

/** The training betas for a config: `trained_betas` if given, else the named schedule, then the optional zero-SNR rescale. */
export function makeBetas(config: ResolvedSchedulerConfig): Float64Array {
  const T = config.num_train_timesteps;
  let betas: Float64Array;
  if (config.trained_betas) {
    betas = Float64Array.from(config.trained_betas);
  } else if (config.beta_schedule === "linear") {
    betas = Float64Array.from(linspace(config.beta_start, config.beta_end, T));
  } else if (config.beta_schedule === "scaled_linear") {
    // "scaled_linear" is linear in sqrt(beta): the schedule latent diffusion was trained with.
    betas = Float64Array.from(linspace(Math.sqrt(config.beta_start), Math.sqrt(config.beta_end), T), (b) => b * b);
  } else {
    betas = betasForAlphaBar(T);
  }
  return config.rescale_betas_zero_snr ? rescaleZeroTerminalSnr(betas) : betas;
}

/** Cumulative product of (1 - beta): the signal fraction alpha_bar_t of the forward process at each training timestep. */
export function alphasCumprod(betas: ArrayLike<number>): Float64Array {
  const out = new Float64Array(betas.length);
  let prod = 1;
  for (let i = 0; i < betas.length; i++) {
    prod *= 1 - betas[i]!;
    out[i] = prod;
  }
  return out;
}

/** Karras-style sigma (noise-to-signal ratio) per training timestep: sqrt((1 - alpha_bar) / alpha_bar). */
export function sigmasFromAlphasCumprod(ac: ArrayLike<number>): Float64Array {
  const out = new Float64Array(ac.length);
  for (let i = 0; i < ac.length; i++) out[i] = Math.sqrt((1 - ac[i]!) / ac[i]!);
  return out;
}

/**
 * Timesteps for `spacing` (diffusers "Common Diffusion Noise Schedules" table), descending.
 * `integer` rounds `linspace` like DDIM/LCM do; Euler-type schedulers keep its fractional values.
 *
 * `trailing` builds exactly `n` values as `round(T - i*T/n) - 1`. numpy's `arange(T, 0, -T/n)` that
 * diffusers uses sometimes yields n+1 values through float error (e.g. T=1000, n=61), ending in -1.
 */
export function spacedTimesteps(
  spacing: TimestepSpacing,
  numTrainTimesteps: number,
  n: number,
  stepsOffset: number,
  integer: boolean,
): number[] {
  const T = numTrainTimesteps;
  if (spacing === "linspace") {
    const ts = linspace(0, T - 1, n).reverse();
    return integer ? ts.map(roundHalfEven) : ts;
  }
  if (spacing === "leading") {
    const ratio = Math.floor(T / n);
    const ts: number[] = [];
    for (let i = n - 1; i >= 0; i--) ts.push(i * ratio + stepsOffset);
    return ts;
  }
  const ratio = T / n;
  const ts: number[] = [];
  for (let i = 0; i < n; i++) ts.push(roundHalfEven(T - i * ratio) - 1);
  return ts;
}

/**
 * Karras et al. (2022) noise levels: `n` sigmas evenly spaced in sigma^(1/rho) from `sigmaMax` down to
 * `sigmaMin`. rho = 7 spends more steps at low noise, where detail forms.
 */
export function karrasSigmas(sigmaMin: number, sigmaMax: number, n: number, rho = 7): number[] {
  const minInv = sigmaMin ** (1 / rho);
  const maxInv = sigmaMax ** (1 / rho);
  return linspace(0, 1, n).map((r) => (maxInv + r * (minInv - maxInv)) ** rho);
}

/**
 * The ends of a Karras schedule: the config's `sigma_min` / `sigma_max` where set, else the schedule's own.
 * They are EulerDiscreteScheduler's config keys, and diffusers' `_convert_to_karras` reads them from any
 * scheduler's config (DPM-Solver's too: a scheduler_config.json key the class does not take is still registered
 * on its config), so one scheduler_config.json clamps every Karras sampler of a model.
 */
export function karrasRange(config: SchedulerConfig, sigmaMin: number, sigmaMax: number): { sigmaMin: number; sigmaMax: number } {
  return { sigmaMin: config.sigma_min ?? sigmaMin, sigmaMax: config.sigma_max ?? sigmaMax };
}

/**
 * diffusers' `_sigma_to_t`: the (fractional) training timestep whose sigma is `sigma`, interpolating
 * linearly in log-sigma between the two neighbouring training timesteps (clamped to the table's range).
 */
export function sigmaToT(sigma: number, logSigmas: ArrayLike<number>): number {
  const logSigma = Math.log(Math.max(sigma, 1e-10));
  const n = logSigmas.length;
  // Last index whose log-sigma is <= logSigma (log_sigmas grow with t), 0 when none, capped so hi exists.
  let low = 0;
  for (let i = 0; i < n; i++) if (logSigma - logSigmas[i]! >= 0) low = i;
  low = Math.min(low, n - 2);
  const high = low + 1;
  const l = logSigmas[low]!;
  const h = logSigmas[high]!;
  let w = (l - logSigma) / (l - h);
  w = Math.min(1, Math.max(0, w));
  return (1 - w) * low + w * high;
}

/** Clamps x0 into [-range, range] (diffusers `clip_sample`), for pixel-space models whose data lives in [-1, 1]. */
export function clipInPlace(x: Float32Array, range: number): void {
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    x[i] = v > range ? range : v < -range ? -range : v;
  }
}

/**
 * Turns a model output into (x0, eps) under the variance-preserving forward process
 * `x_t = alphaT * x0 + sigmaT * eps` (alphaT = sqrt(alpha_bar), sigmaT = sqrt(1 - alpha_bar)).
 * Used by DDIM, LCM and DPM-Solver, which all parameterise the sample this way.
 */
export function vpToX0Eps(
  predictionType: PredictionType,
  modelOutput: Float32Array,
  sample: Float32Array,
  alphaT: number,
  sigmaT: number,
): { x0: Float32Array; eps: Float32Array } {
  const n = sample.length;
  const x0 = new Float32Array(n);
  const eps = new Float32Array(n);
  switch (predictionType) {
    case "epsilon":
      for (let i = 0; i < n; i++) {
        x0[i] = (sample[i]! - sigmaT * modelOutput[i]!) / alphaT;
        eps[i] = modelOutput[i]!;
      }
      break;
    case "sample":
      for (let i = 0; i < n; i++) {
        x0[i] = modelOutput[i]!;
        eps[i] = (sample[i]! - alphaT * modelOutput[i]!) / sigmaT;
      }
      break;
    case "v_prediction":
      // v = alphaT * eps - sigmaT * x0 (Salimans & Ho), so x0 and eps are rotations of (x_t, v).
      for (let i = 0; i < n; i++) {
        x0[i] = alphaT * sample[i]! - sigmaT * modelOutput[i]!;
        eps[i] = alphaT * modelOutput[i]! + sigmaT * sample[i]!;
      }
      break;
    default:
      throw new ValidationError(`prediction_type "${String(predictionType)}" is not supported here`, {
        field: "scheduler",
        data: { key: "prediction_type" },
      });
  }
  return { x0, eps };
}

/**
 * Turns a model output into x0 under the variance-exploding parameterisation Euler-type schedulers use,
 * `x = x0 + sigma * eps` (the model sees `x / sqrt(sigma^2 + 1)`, i.e. the VP sample).
 */
export function veToX0(predictionType: PredictionType, modelOutput: Float32Array, sample: Float32Array, sigma: number): Float32Array {
  const n = sample.length;
  const x0 = new Float32Array(n);
  switch (predictionType) {
    case "epsilon":
      for (let i = 0; i < n; i++) x0[i] = sample[i]! - sigma * modelOutput[i]!;
      break;
    case "sample":
      x0.set(modelOutput);
      break;
    case "v_prediction": {
      // Same rotation as vpToX0Eps, rewritten for the unscaled VE sample (alphaT = 1/sqrt(sigma^2+1)).
      const c = -sigma / Math.sqrt(sigma * sigma + 1);
      const d = 1 / (sigma * sigma + 1);
      for (let i = 0; i < n; i++) x0[i] = modelOutput[i]! * c + sample[i]! * d;
      break;
    }
    default:
      throw new ValidationError(`prediction_type "${String(predictionType)}" is not supported here`, {
        field: "scheduler",
        data: { key: "prediction_type" },
      });
  }
  return x0;
}

/** Flow-matching shift (SD3): sigma' = shift*s / (1 + (shift-1)*s). shift > 1 spends more steps at high noise. */
export function flowShift(sigma: number, shift: number): number {
  return (shift * sigma) / (1 + (shift - 1) * sigma);
}

/**
 * Resolution-dependent flow shift (Flux `use_dynamic_shifting`): "exponential" e^mu / (e^mu + (1/t - 1)^s),
 * "linear" mu / (mu + (1/t - 1)^s), with s = 1 in diffusers.
 */
export function timeShift(kind: "exponential" | "linear", mu: number, s: number, t: number): number {
  if (kind === "linear") return mu / (mu + (1 / t - 1) ** s);
  return Math.exp(mu) / (Math.exp(mu) + (1 / t - 1) ** s);
}

/**
 * The forward process every scheduler's `addNoise` reduces to: `a * x0 + b * noise`, with (a, b) =
 * (sqrt ᾱ, sqrt(1 - ᾱ)) for the VP samplers (DDIM, PNDM, LCM; DPM-Solver's alpha_t, sigma_t is the same pair),
 * (1, sigma) for the VE Euler family and (1 - sigma, sigma) for flow matching. One loop instead of one per sampler.
 */
export function mixNoise(original: Float32Array, noise: Float32Array, a: number, b: number): Float32Array {
  assertSameLength(noise, original);
  const out = new Float32Array(original.length);
  for (let i = 0; i < out.length; i++) out[i] = a * original[i]! + b * noise[i]!;
  return out;
}

/** VP forward process q(x_t | x0) at cumulative alpha ᾱ_t: sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) noise (diffusers' DDPM `add_noise`). */
export function addNoiseVP(original: Float32Array, noise: Float32Array, alphaBar: number): Float32Array {
  return mixNoise(original, noise, Math.sqrt(alphaBar), Math.sqrt(1 - alphaBar));
}

/**
 * ᾱ at an integer training timestep for DDIM-style samplers; a negative timestep (past the last step)
 * gives `finalAlphaCumprod`. Anything else is a ValidationError naming the scheduler.
 */
export function alphaCumprodAt(alphasCumprod: ArrayLike<number>, finalAlphaCumprod: number, t: number, schedulerName: string): number {
  if (!Number.isInteger(t) || t >= alphasCumprod.length) {
    throw new ValidationError(`scheduler "${schedulerName}": timestep ${t} is not an integer training timestep`, { field: "timestep" });
  }
  return t >= 0 ? alphasCumprod[t]! : finalAlphaCumprod;
}
