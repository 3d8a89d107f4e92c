/**
 * Euler ancestral (k-diffusion `sample_euler_ancestral`) with diffusers' `EulerAncestralDiscreteScheduler`
 * semantics: each step goes deterministically down to sigma_down, then adds fresh noise of std sigma_up,
 * so that sigma_down^2 + sigma_up^2 = sigma_next^2.
 */
import { ValidationError } from "../errors/omni-error.js";
import {
  EULER_FAMILY_DEFAULTS,
  EulerSigmaTable,
  addNoiseVE,
  assertSameLength,
  eulerInitNoiseSigma,
  resolveEulerConfig,
  resolveStepIndex,
  scaleBySigma,
  validateNumSteps,
  veToX0,
  type EulerConfig,
} from "./math.js";
import type { NoiseSource, Scheduler, SchedulerConfig } from "./types.js";

/**
 * The ancestral split of a step from `sigmaFrom` to `sigmaTo` (eta = 1): the noise to inject (`sigmaUp`)
 * and the level the deterministic part lands on (`sigmaDown`).
 */
export function ancestralSigmas(sigmaFrom: number, sigmaTo: number): { sigmaUp: number; sigmaDown: number } {
  const up2 = (sigmaTo * sigmaTo * (sigmaFrom * sigmaFrom - sigmaTo * sigmaTo)) / (sigmaFrom * sigmaFrom);
  const sigmaUp = Math.sqrt(Math.max(up2, 0));
  const sigmaDown = Math.sqrt(Math.max(sigmaTo * sigmaTo - sigmaUp * sigmaUp, 0));
  return { sigmaUp, sigmaDown };
}

/** Euler ancestral sampler (`euler_a` / `euler_ancestral`). Needs a noise source for every step but the last. */
export class EulerAncestralScheduler implements Scheduler {
  readonly name: string;
  readonly config: EulerConfig;
  private readonly table: EulerSigmaTable;
  private _timesteps: number[] = [];
  private _sigmas: number[] = [];
  private stepIndex: number | null = null;

  constructor(config: SchedulerConfig = {}, name = "euler_a") {
    this.name = name;
    // diffusers' ancestral class has no Karras option; a config carrying one (from EulerDiscrete) is ignored.
    this.config = { ...resolveEulerConfig(EULER_FAMILY_DEFAULTS, config), use_karras_sigmas: false };
    this.table = new EulerSigmaTable(this.config);
  }

  get timesteps(): number[] {
    return this._timesteps;
  }
  get sigmas(): number[] {
    return this._sigmas;
  }
  get initNoiseSigma(): number {
    return eulerInitNoiseSigma(this.config.timestep_spacing, this._sigmas);
  }

  setTimesteps(numInferenceSteps: number): void {
    validateNumSteps(numInferenceSteps, this.config.num_train_timesteps);
    const { timesteps, sigmas } = this.table.build(numInferenceSteps, false);
    this._timesteps = timesteps;
    this._sigmas = sigmas;
    this.stepIndex = null;
  }

  scaleModelInput(sample: Float32Array, t: number): Float32Array {
    this.stepIndex = resolveStepIndex(this.stepIndex, this._timesteps, t, this.name);
    return scaleBySigma(sample, this._sigmas[this.stepIndex]!);
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array, rng?: NoiseSource): { prevSample: Float32Array; predOriginalSample: Float32Array } {
    assertSameLength(modelOutput, sample);
    const i = resolveStepIndex(this.stepIndex, this._timesteps, t, this.name);
    const sigma = this._sigmas[i]!;
    const { sigmaUp, sigmaDown } = ancestralSigmas(sigma, this._sigmas[i + 1]!);
    const x0 = veToX0(this.config.prediction_type, modelOutput, sample, sigma);
    const ratio = (sigmaDown - sigma) / sigma;
    const n = sample.length;
    const prev = new Float32Array(n);
    for (let k = 0; k < n; k++) prev[k] = sample[k]! + (sample[k]! - x0[k]!) * ratio;
    // sigma_up is 0 on the final step (sigma_next = 0), so no noise source is needed there.
    if (sigmaUp > 0) {
      if (!rng) throw new ValidationError(`scheduler "${this.name}" needs a noise source (rng) for its ancestral steps`, { field: "rng" });
      const noise = rng.randn(new Float32Array(n));
      for (let k = 0; k < n; k++) prev[k] = prev[k]! + noise[k]! * sigmaUp;
    }
    this.stepIndex = i + 1;
    return { prevSample: prev, predOriginalSample: x0 };
  }

  addNoise(original: Float32Array, noise: Float32Array, t: number): Float32Array {
    const i = resolveStepIndex(null, this._timesteps, t, this.name);
    return addNoiseVE(original, noise, this._sigmas[i]!);
  }
}
