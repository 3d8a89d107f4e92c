/**
 * The Euler family's shared parts (Euler, Euler ancestral): its config keys and defaults, the sigma table
 * over (fractional) timesteps, and the VE ↔ VP input scaling (diffusers' EulerDiscreteScheduler).
 */
import { ValidationError } from "../errors/omni-error.js";
import {
  alphasCumprod,
  interp,
  karrasRange,
  karrasSigmas,
  linspace,
  makeBetas,
  sigmasFromAlphasCumprod,
  sigmaToT,
  spacedTimesteps,
} from "./math.js";
import { BASE_DEFAULTS, resolveConfig, type ResolvedSchedulerConfig, VP_PREDICTION_TYPES } from "./scheduler-config.js";
import type { SchedulerConfig } from "./types.js";

/** Config for the Euler family: the shared keys plus sigma-schedule options. */
export type EulerConfig = ResolvedSchedulerConfig &
  Required<Pick<SchedulerConfig, "use_karras_sigmas">> & {
    /** Last sigma appended after the schedule: "zero" (default) or the training sigma_min. */
    final_sigmas_type: "zero" | "sigma_min";
    /** Only "linear" (np.interp over timesteps) is implemented. */
    interpolation_type: "linear";
  };

/** diffusers' `EulerDiscreteScheduler` / `EulerAncestralDiscreteScheduler` class defaults. */
export const EULER_FAMILY_DEFAULTS: EulerConfig = {
  ...BASE_DEFAULTS,
  use_karras_sigmas: false,
  final_sigmas_type: "zero",
  interpolation_type: "linear",
};

/** Resolves and checks the Euler-family extras (shared by Euler and Euler ancestral). */
export function resolveEulerConfig(defaults: EulerConfig, config: SchedulerConfig): EulerConfig {
  const c = resolveConfig(defaults, config, VP_PREDICTION_TYPES);
  if (c.final_sigmas_type !== "zero" && c.final_sigmas_type !== "sigma_min") {
    throw new ValidationError(`scheduler config final_sigmas_type must be "zero" or "sigma_min"`, {
      field: "scheduler",
      data: { key: "final_sigmas_type" },
    });
  }
  if (c.interpolation_type !== "linear") {
    throw new ValidationError(`scheduler config interpolation_type "${String(c.interpolation_type)}" is not supported (only "linear")`, {
      field: "scheduler",
      data: { key: "interpolation_type" },
    });
  }
  const timestepType = (config as Record<string, unknown>).timestep_type;
  if (timestepType !== undefined && timestepType !== null && timestepType !== "discrete") {
    throw new ValidationError(`scheduler config timestep_type "${String(timestepType)}" is not supported (only "discrete")`, {
      field: "scheduler",
      data: { key: "timestep_type" },
    });
  }
  return c;
}

/**
 * The sigma table of an Euler-type scheduler: training sigmas (with the zero-SNR fix diffusers applies),
 * and the inference schedule built from them.
 */
export class EulerSigmaTable {
  /** Training sigma per timestep (index = timestep). */
  readonly trainSigmas: Float64Array;
  readonly logSigmas: Float64Array;
  readonly alphasCumprod: Float64Array;

  constructor(readonly config: EulerConfig) {
    const ac = alphasCumprod(makeBetas(config));
    // Zero terminal SNR makes sigma[T-1] infinite; diffusers pins alpha_bar there to 2^-24 (sigma ≈ 4096).
    if (config.rescale_betas_zero_snr) ac[ac.length - 1] = 2 ** -24;
    this.alphasCumprod = ac;
    this.trainSigmas = sigmasFromAlphasCumprod(ac);
    this.logSigmas = this.trainSigmas.map(Math.log);
  }

  /** diffusers `set_timesteps`: spaced timesteps, sigmas interpolated at them (or Karras'd), plus the final sigma. */
  build(n: number, useKarras: boolean): { timesteps: number[]; sigmas: number[] } {
    const c = this.config;
    let timesteps = spacedTimesteps(c.timestep_spacing, c.num_train_timesteps, n, c.steps_offset, false);
    const grid = Array.from(this.trainSigmas, (_, i) => i);
    let sigmas = timesteps.map((t) => interp(t, grid, this.trainSigmas));
    if (useKarras) {
      // The Karras range is the interpolated schedule's own ends (so `leading` keeps its offset end).
      const { sigmaMin, sigmaMax } = karrasRange(c, sigmas[sigmas.length - 1]!, sigmas[0]!);
      sigmas = karrasSigmas(sigmaMin, sigmaMax, n);
      timesteps = sigmas.map((s) => sigmaToT(s, this.logSigmas));
    }
    const last = c.final_sigmas_type === "sigma_min" ? this.trainSigmas[0]! : 0;
    return { timesteps, sigmas: [...sigmas, last] };
  }
}

/** diffusers' `init_noise_sigma` for Euler-type schedulers: sigma_max, or sqrt(sigma_max^2 + 1) for `leading`. */
export function eulerInitNoiseSigma(spacing: string, sigmas: readonly number[]): number {
  if (sigmas.length === 0) return 1;
  const max = Math.max(...sigmas);
  return spacing === "linspace" || spacing === "trailing" ? max : Math.sqrt(max * max + 1);
}

/** Scales a VE sample to the VP input the model was trained on: x / sqrt(sigma^2 + 1). */
export function scaleBySigma(sample: Float32Array, sigma: number): Float32Array {
  const k = 1 / Math.sqrt(sigma * sigma + 1);
  const out = new Float32Array(sample.length);
  for (let i = 0; i < out.length; i++) out[i] = sample[i]! * k;
  return out;
}
