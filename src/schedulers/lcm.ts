/**
 * Latent Consistency Model sampling (Luo et al. 2023) with diffusers' `LCMScheduler` semantics: each step
 * predicts the clean sample through the consistency-model boundary condition, then re-noises it to the
 * next timestep with fresh noise (except after the last step).
 */
import { ValidationError } from "../errors/omni-error.js";
import { clipInPlace, vpToX0Eps } from "./math.js";
import {
  BASE_DEFAULTS,
  assertSameLength,
  validateNumSteps,
  VP_PREDICTION_TYPES,
  type PredictionType,
} from "./scheduler-config.js";
import { checkBeginIndex, resolveStepIndex } from "./step-index.js";
import type { NoiseSource, SchedulerConfig } from "./types.js";
import { VpScheduler, type VpConfig } from "./vp-schedule.js";

/** LCM config: the shared keys plus the distillation schedule and boundary-condition scaling. */
export type LcmConfig = VpConfig &
  Required<Pick<SchedulerConfig, "clip_sample" | "clip_sample_range" | "original_inference_steps" | "timestep_scaling">>;

/** diffusers' `LCMScheduler` class defaults (it ships with the SD latent schedule, not DDPM's linear one). */
export const LCM_DEFAULTS: LcmConfig = {
  ...BASE_DEFAULTS,
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: "scaled_linear",
  timestep_spacing: "leading",
  set_alpha_to_one: true,
  clip_sample: false,
  clip_sample_range: 1.0,
  original_inference_steps: 50,
  timestep_scaling: 10.0,
};

/**
 * Consistency-model boundary condition (diffusers `get_scalings_for_boundary_condition_discrete`):
 * c_skip → 1, c_out → 0 as t → 0, so the model is the identity on clean data. sigma_data = 0.5.
 */
export function lcmBoundaryScalings(t: number, timestepScaling: number): { cSkip: number; cOut: number } {
  const sigmaData = 0.5;
  const st = t * timestepScaling;
  return {
    cSkip: (sigmaData * sigmaData) / (st * st + sigmaData * sigmaData),
    cOut: st / Math.sqrt(st * st + sigmaData * sigmaData),
  };
}

/** LCM sampler (`lcm`). Needs a noise source for every step but the last. */
export class LcmScheduler extends VpScheduler<LcmConfig> {
  /** Prediction types this sampler can drive (schedulers/index.ts lists per model only the samplers that fit). */
  static readonly predictionTypes: readonly PredictionType[] = VP_PREDICTION_TYPES;
  private stepIndex: number | null = null;

  constructor(config: SchedulerConfig = {}, name = "lcm") {
    super(LCM_DEFAULTS, config, name, LcmScheduler.predictionTypes, checkLcmConfig);
  }

  /**
   * Picks `n` evenly spaced timesteps out of the distillation schedule (every T/original_steps-th step,
   * ending at T-1). `timestep_spacing` and `steps_offset` are ignored, as in diffusers.
   */
  setTimesteps(numInferenceSteps: number): void {
    const c = this.config;
    validateNumSteps(numInferenceSteps, c.num_train_timesteps);
    const orig = c.original_inference_steps;
    if (numInferenceSteps > orig) {
      throw new ValidationError(
        `num_inference_steps (${numInferenceSteps}) cannot exceed LCM's original_inference_steps (${orig}): the schedule is a subset of that one`,
        { field: "num_inference_steps" },
      );
    }
    const k = Math.floor(c.num_train_timesteps / orig);
    // Distillation schedule, descending: orig*k-1, ..., 2k-1, k-1.
    const origin: number[] = [];
    for (let i = orig; i >= 1; i--) origin.push(i * k - 1);
    // np.floor(np.linspace(0, len, n, endpoint=False)) picks the indices.
    const step = origin.length / numInferenceSteps;
    this._timesteps = Array.from({ length: numInferenceSteps }, (_, i) => origin[Math.floor(i * step)]!);
    this.stepIndex = null;
  }

  /** diffusers' `set_begin_index`: the next run's first step is schedule index `index` (img2img). */
  setBeginIndex(index: number): void {
    this.stepIndex = checkBeginIndex(index, this._timesteps, this.name);
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array, rng?: NoiseSource): { prevSample: Float32Array; predOriginalSample: Float32Array } {
    assertSameLength(modelOutput, sample);
    const c = this.config;
    const i = resolveStepIndex(this.stepIndex, this._timesteps, t, this.name);
    const isLast = i === this._timesteps.length - 1;
    // Like diffusers, alpha_t and the boundary scalings use the timestep passed in; the target is the next
    // scheduled timestep (the last step targets itself, but skips the re-noising anyway).
    const timestep = t;
    const prevT = isLast ? timestep : this._timesteps[i + 1]!;
    const alphaT = this.alphaAt(timestep);
    const alphaPrev = this.alphaAt(prevT);

    const { cSkip, cOut } = lcmBoundaryScalings(timestep, c.timestep_scaling);
    const { x0 } = vpToX0Eps(c.prediction_type, modelOutput, sample, Math.sqrt(alphaT), Math.sqrt(1 - alphaT));
    if (c.clip_sample) clipInPlace(x0, c.clip_sample_range);

    const n = sample.length;
    const denoised = new Float32Array(n);
    for (let k = 0; k < n; k++) denoised[k] = cOut * x0[k]! + cSkip * sample[k]!;

    let prev: Float32Array;
    if (isLast) {
      prev = new Float32Array(denoised);
    } else {
      if (!rng) throw new ValidationError(`scheduler "${this.name}" needs a noise source (rng) between steps`, { field: "rng" });
      const noise = rng.randn(new Float32Array(n));
      const sa = Math.sqrt(alphaPrev);
      const sb = Math.sqrt(1 - alphaPrev);
      prev = new Float32Array(n);
      for (let k = 0; k < n; k++) prev[k] = sa * denoised[k]! + sb * noise[k]!;
    }
    this.stepIndex = i + 1;
    return { prevSample: prev, predOriginalSample: denoised };
  }
}

/** LCM's own keys: the distillation step count must fit the training range, the scaling be finite. */
function checkLcmConfig(c: LcmConfig): void {
  const orig = c.original_inference_steps;
  if (typeof orig !== "number" || !Number.isInteger(orig) || orig < 1 || orig > c.num_train_timesteps) {
    throw new ValidationError(`scheduler config original_inference_steps must be an integer in [1, ${c.num_train_timesteps}]`, {
      field: "scheduler",
      data: { key: "original_inference_steps" },
    });
  }
  if (typeof c.timestep_scaling !== "number" || !Number.isFinite(c.timestep_scaling)) {
    throw new ValidationError(`scheduler config timestep_scaling must be a finite number`, { field: "scheduler", data: { key: "timestep_scaling" } });
  }
}
