/**
 * Euler (Karras et al. 2022, Algorithm 2 without churn) with diffusers' `EulerDiscreteScheduler` semantics:
 * the sample lives in variance-exploding space `x = x0 + sigma * eps`, timesteps may be fractional.
 */
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

/** Euler discrete sampler (`euler`, or `euler_karras` with Karras sigmas). */
export class EulerDiscreteScheduler implements Scheduler {
  readonly name: string;
  readonly config: EulerConfig;
  private readonly table: EulerSigmaTable;
  private _timesteps: number[] = [];
  private _sigmas: number[] = [];
  private stepIndex: number | null = null;

  constructor(config: SchedulerConfig = {}, name = "euler") {
    this.name = name;
    this.config = resolveEulerConfig(EULER_FAMILY_DEFAULTS, config);
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
    const { timesteps, sigmas } = this.table.build(numInferenceSteps, this.config.use_karras_sigmas);
    this._timesteps = timesteps;
    this._sigmas = sigmas;
    this.stepIndex = null;
  }

  scaleModelInput(sample: Float32Array, t: number): Float32Array {
    this.stepIndex = resolveStepIndex(this.stepIndex, this._timesteps, t, this.name);
    return scaleBySigma(sample, this._sigmas[this.stepIndex]!);
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array, _rng?: NoiseSource): { prevSample: Float32Array; predOriginalSample: Float32Array } {
    assertSameLength(modelOutput, sample);
    const i = resolveStepIndex(this.stepIndex, this._timesteps, t, this.name);
    const sigma = this._sigmas[i]!;
    const sigmaNext = this._sigmas[i + 1]!;
    const x0 = veToX0(this.config.prediction_type, modelOutput, sample, sigma);
    // dx/dsigma = (x - x0) / sigma; one Euler step in sigma.
    const ratio = (sigmaNext - sigma) / sigma;
    const prev = new Float32Array(sample.length);
    for (let k = 0; k < prev.length; k++) prev[k] = sample[k]! + (sample[k]! - x0[k]!) * ratio;
    this.stepIndex = i + 1;
    return { prevSample: prev, predOriginalSample: x0 };
  }

  addNoise(original: Float32Array, noise: Float32Array, t: number): Float32Array {
    const i = resolveStepIndex(null, this._timesteps, t, this.name);
    return addNoiseVE(original, noise, this._sigmas[i]!);
  }
}
