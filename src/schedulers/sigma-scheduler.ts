/**
 * What Euler and Euler ancestral share: the variance-exploding sigma table, step-index tracking,
 * input scaling and noising. Each subclass only says how one step moves the sample.
 */
import { mixNoise } from "./math.js";
import { validateNumSteps, VP_PREDICTION_TYPES, type PredictionType } from "./scheduler-config.js";
import { checkBeginIndex, noiseIndex, resolveStepIndex } from "./step-index.js";
import { EULER_FAMILY_DEFAULTS, EulerSigmaTable, eulerInitNoiseSigma, resolveEulerConfig, scaleBySigma, type EulerConfig } from "./euler-family.js";
import type { NoiseSource, Scheduler, SchedulerConfig } from "./types.js";

/** Base of the Euler-family samplers (sample space `x = x0 + sigma * eps`, fractional timesteps). */
export abstract class SigmaScheduler implements Scheduler {
  /** Prediction types this sampler can drive (schedulers/index.ts lists per model only the samplers that fit). */
  static readonly predictionTypes: readonly PredictionType[] = VP_PREDICTION_TYPES;
  readonly name: string;
  readonly config: EulerConfig;
  private readonly table: EulerSigmaTable;
  protected _timesteps: number[] = [];
  protected _sigmas: number[] = [];
  protected stepIndex: number | null = null;

  /** `overrides` are applied after the defaults and the user's config (e.g. a class without Karras sigmas). */
  constructor(config: SchedulerConfig, name: string, overrides: Partial<EulerConfig> = {}) {
    this.name = name;
    this.config = { ...resolveEulerConfig(EULER_FAMILY_DEFAULTS, config), ...overrides };
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

  /** diffusers' `set_begin_index`: the next run's first step is schedule index `index` (img2img). */
  setBeginIndex(index: number): void {
    this.stepIndex = checkBeginIndex(index, this._timesteps, this.name);
  }

  scaleModelInput(sample: Float32Array, t: number): Float32Array {
    this.stepIndex = resolveStepIndex(this.stepIndex, this._timesteps, t, this.name);
    return scaleBySigma(sample, this._sigmas[this.stepIndex]!);
  }

  abstract step(modelOutput: Float32Array, t: number, sample: Float32Array, rng?: NoiseSource): { prevSample: Float32Array; predOriginalSample: Float32Array };

  /** VE forward process x0 + sigma(t) * noise (diffusers' Euler `add_noise`). */
  addNoise(original: Float32Array, noise: Float32Array, t: number): Float32Array {
    const i = noiseIndex(this._timesteps, t, this.name);
    return mixNoise(original, noise, 1, this._sigmas[i]!);
  }

  /** The index of timestep `t` for a step (the one scaleModelInput saw, or looked up). */
  protected stepIndexFor(t: number): number {
    return resolveStepIndex(this.stepIndex, this._timesteps, t, this.name);
  }

  /** One Euler move in sigma: dx/dsigma = (x - x0) / sigma, from `sigma` to `sigmaTo`. */
  protected static eulerMove(sample: Float32Array, x0: Float32Array, sigma: number, sigmaTo: number): Float32Array {
    const ratio = (sigmaTo - sigma) / sigma;
    const prev = new Float32Array(sample.length);
    for (let k = 0; k < prev.length; k++) prev[k] = sample[k]! + (sample[k]! - x0[k]!) * ratio;
    return prev;
  }
}
