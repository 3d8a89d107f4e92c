/**
 * DDIM (Song et al. 2020) with diffusers' `DDIMScheduler` semantics. Deterministic at the default eta = 0.
 */
import { ValidationError } from "../errors/omni-error.js";
import { clipInPlace, vpToX0Eps } from "./math.js";
import { BASE_DEFAULTS, assertSameLength, VP_PREDICTION_TYPES, type PredictionType } from "./scheduler-config.js";
import { notReady } from "./step-index.js";
import type { NoiseSource, SchedulerConfig } from "./types.js";
import { VpScheduler, type VpConfig } from "./vp-schedule.js";

/** DDIM config: the shared keys plus `set_alpha_to_one`, `clip_sample(_range)` and our `eta` extension. */
export type DdimConfig = VpConfig &
  Required<Pick<SchedulerConfig, "clip_sample" | "clip_sample_range">> & {
    /** Noise weight (diffusers passes it to `step`; 0 = deterministic DDIM, 1 = DDPM-like). */
    eta: number;
  };

/** diffusers' `DDIMScheduler` class defaults. */
export const DDIM_DEFAULTS: DdimConfig = {
  ...BASE_DEFAULTS,
  timestep_spacing: "leading",
  set_alpha_to_one: true,
  clip_sample: true,
  clip_sample_range: 1.0,
  eta: 0,
};

/** DDIM sampler. Timesteps are integers; the model input is not scaled. */
export class DdimScheduler extends VpScheduler<DdimConfig> {
  /** Prediction types this sampler can drive (schedulers/index.ts lists per model only the samplers that fit). */
  static readonly predictionTypes: readonly PredictionType[] = VP_PREDICTION_TYPES;

  constructor(config: SchedulerConfig = {}, name = "ddim") {
    super(DDIM_DEFAULTS, config, name, DdimScheduler.predictionTypes, (c) => {
      if (typeof c.eta !== "number" || !(c.eta >= 0)) {
        throw new ValidationError(`scheduler config eta must be a number >= 0`, { field: "scheduler", data: { key: "eta" } });
      }
    });
  }

  setTimesteps(numInferenceSteps: number): void {
    this._timesteps = this.spacedSchedule(numInferenceSteps);
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array, rng?: NoiseSource): { prevSample: Float32Array; predOriginalSample: Float32Array } {
    if (this.numInferenceSteps === 0) throw notReady(this.name);
    assertSameLength(modelOutput, sample);
    const c = this.config;
    // diffusers steps back by the fixed ratio T // n whatever the spacing; for "trailing" that lands on -1 at the end.
    const prevT = t - Math.floor(c.num_train_timesteps / this.numInferenceSteps);
    const alphaT = this.alphaAt(t);
    const alphaPrev = prevT >= 0 ? this.alphaAt(prevT) : this.finalAlphaCumprod;
    const betaT = 1 - alphaT;

    const { x0, eps } = vpToX0Eps(c.prediction_type, modelOutput, sample, Math.sqrt(alphaT), Math.sqrt(betaT));
    if (c.clip_sample) clipInPlace(x0, c.clip_sample_range);

    // Formula (16) of the DDIM paper: sigma_t = eta * sqrt((1-a_prev)/(1-a_t)) * sqrt(1 - a_t/a_prev).
    const variance = ((1 - alphaPrev) / betaT) * (1 - alphaT / alphaPrev);
    const std = c.eta * Math.sqrt(Math.max(variance, 0));
    const dirCoef = Math.sqrt(Math.max(1 - alphaPrev - std * std, 0));
    const sqrtPrev = Math.sqrt(alphaPrev);

    const n = sample.length;
    const prev = new Float32Array(n);
    for (let i = 0; i < n; i++) prev[i] = sqrtPrev * x0[i]! + dirCoef * eps[i]!;
    if (std > 0) {
      if (!rng) throw new ValidationError(`scheduler "${this.name}" with eta > 0 needs a noise source`, { field: "rng" });
      const noise = rng.randn(new Float32Array(n));
      for (let i = 0; i < n; i++) prev[i] = prev[i]! + std * noise[i]!;
    }
    return { prevSample: prev, predOriginalSample: x0 };
  }
}
