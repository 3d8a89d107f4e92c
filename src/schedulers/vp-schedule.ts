/**
 * What the variance-preserving samplers that index ᾱ by training timestep (DDIM, PNDM, LCM) share: the
 * config merge, betas → ᾱ, the "final" ᾱ before timestep 0, the spaced integer timesteps, unscaled model
 * input and VP noising. Each subclass only says how its schedule is laid out and how one step moves.
 */
import { addNoiseVP, alphaCumprodAt, alphasCumprod, makeBetas, spacedTimesteps } from "./math.js";
import {
  checkTimestepsInRange,
  resolveConfig,
  validateNumSteps,
  type PredictionType,
  type ResolvedSchedulerConfig,
} from "./scheduler-config.js";
import type { NoiseSource, Scheduler, SchedulerConfig } from "./types.js";

/** The keys every VP sampler reads: the shared ones plus `set_alpha_to_one`. */
export type VpConfig = ResolvedSchedulerConfig & Required<Pick<SchedulerConfig, "set_alpha_to_one">>;

/** Base of DDIM, PNDM and LCM (sample space `x = sqrt(ᾱ) x0 + sqrt(1 - ᾱ) eps`, integer timesteps). */
export abstract class VpScheduler<C extends VpConfig> implements Scheduler {
  readonly name: string;
  readonly config: C;
  readonly initNoiseSigma = 1;
  readonly sigmas: number[] = [];
  /** alpha_bar per training timestep. */
  readonly alphasCumprod: Float64Array;
  /** alpha_bar "before" timestep 0: 1 (a clean image) or alpha_bar[0], per `set_alpha_to_one`. */
  readonly finalAlphaCumprod: number;
  protected _timesteps: number[] = [];
  /** The step count of the last `setTimesteps` (0 = not set yet). */
  protected numInferenceSteps = 0;

  /**
   * `check` runs on the merged config before the schedule is built, for the sampler's own keys (so a bad
   * key fails with its own message first, as it did when each sampler built its schedule itself).
   */
  protected constructor(defaults: C, config: SchedulerConfig, name: string, predictionTypes: readonly PredictionType[], check?: (c: C) => void) {
    this.name = name;
    const c = resolveConfig(defaults, config, predictionTypes);
    check?.(c);
    this.config = c;
    this.alphasCumprod = alphasCumprod(makeBetas(c));
    this.finalAlphaCumprod = c.set_alpha_to_one ? 1 : this.alphasCumprod[0]!;
  }

  get timesteps(): number[] {
    return this._timesteps;
  }

  abstract setTimesteps(numInferenceSteps: number): void;

  abstract step(modelOutput: Float32Array, t: number, sample: Float32Array, rng?: NoiseSource): { prevSample: Float32Array; predOriginalSample?: Float32Array };

  /** Identity: VP samplers feed the model the sample as is (returns the same array). */
  scaleModelInput(sample: Float32Array, _t: number): Float32Array {
    return sample;
  }

  /** q(x_t | x0): sqrt(alpha_bar_t) * x0 + sqrt(1 - alpha_bar_t) * noise. */
  addNoise(original: Float32Array, noise: Float32Array, t: number): Float32Array {
    return addNoiseVP(original, noise, this.alphaAt(t));
  }

  /** alpha_bar at integer training timestep `t` (refuses anything else, naming the sampler). */
  protected alphaAt(t: number): number {
    return alphaCumprodAt(this.alphasCumprod, this.finalAlphaCumprod, t, this.name);
  }

  /**
   * The config's `timestep_spacing` over the training range, descending, checked against the range
   * (DDIM's and PNDM's schedule); records the step count the fixed step ratio T // n is taken from.
   */
  protected spacedSchedule(numInferenceSteps: number): number[] {
    const c = this.config;
    validateNumSteps(numInferenceSteps, c.num_train_timesteps);
    this.numInferenceSteps = numInferenceSteps;
    const ts = spacedTimesteps(c.timestep_spacing, c.num_train_timesteps, numInferenceSteps, c.steps_offset, true);
    checkTimestepsInRange(this.name, ts, c.num_train_timesteps, numInferenceSteps, c.steps_offset);
    return ts;
  }
}
