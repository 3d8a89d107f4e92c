/**
 * Rectified-flow Euler sampler with diffusers' `FlowMatchEulerDiscreteScheduler` semantics (SD3, Flux):
 * x_sigma = (1 - sigma) * x0 + sigma * noise, the model predicts the velocity v = noise - x0, and a step
 * is x + (sigma_next - sigma) * v. Timesteps are sigma * T (fractional).
 */
import { ValidationError } from "../errors/omni-error.js";
import { mixNoise, flowShift, karrasSigmas, linspace, timeShift } from "./math.js";
import {
  BASE_DEFAULTS,
  assertSameLength,
  resolveConfig,
  validateNumSteps,
  type PredictionType,
  type ResolvedSchedulerConfig,
} from "./scheduler-config.js";
import { checkBeginIndex, noiseIndex, resolveStepIndex } from "./step-index.js";
import type { NoiseSource, Scheduler, SchedulerConfig, SetTimestepsOptions } from "./types.js";

/** Flow-matching config: `shift` and the Flux dynamic-shift keys (beta keys are irrelevant here). */
export type FlowMatchConfig = ResolvedSchedulerConfig &
  Required<Pick<SchedulerConfig, "shift" | "use_karras_sigmas">> & {
    /** Flux: shift from the image size via `mu` passed to setTimesteps, instead of the fixed `shift`. */
    use_dynamic_shifting: boolean;
    base_shift: number;
    max_shift: number;
    base_image_seq_len: number;
    max_image_seq_len: number;
    /** How `mu` bends the schedule: "exponential" (Flux) or "linear". */
    time_shift_type: "exponential" | "linear";
    /** If set, stretch the schedule so the last sigma equals this (LTX-Video). */
    shift_terminal: number | null;
    /** Re-noise each step from the predicted x0 instead of the ODE step (needs a noise source). */
    stochastic_sampling: boolean;
  };

/** diffusers' `FlowMatchEulerDiscreteScheduler` class defaults. */
export const FLOW_MATCH_DEFAULTS: FlowMatchConfig = {
  ...BASE_DEFAULTS,
  prediction_type: "flow_prediction",
  shift: 1.0,
  use_karras_sigmas: false,
  use_dynamic_shifting: false,
  base_shift: 0.5,
  max_shift: 1.15,
  base_image_seq_len: 256,
  max_image_seq_len: 4096,
  time_shift_type: "exponential",
  shift_terminal: null,
  stochastic_sampling: false,
};

function bad(key: string, message: string): ValidationError {
  return new ValidationError(`scheduler config ${key}: ${message}`, { field: "scheduler", data: { key } });
}

/**
 * The `mu` Flux-style pipelines pass for dynamic shifting: linear in the latent sequence length between
 * (base_image_seq_len, base_shift) and (max_image_seq_len, max_shift) (diffusers `calculate_shift`).
 */
export function calculateShift(imageSeqLen: number, config: Partial<FlowMatchConfig> = {}): number {
  const c = { ...FLOW_MATCH_DEFAULTS, ...config };
  const m = (c.max_shift - c.base_shift) / (c.max_image_seq_len - c.base_image_seq_len);
  const b = c.base_shift - m * c.base_image_seq_len;
  return imageSeqLen * m + b;
}

/** Flow-matching Euler sampler (`flow_euler`). The model input is not scaled and initial noise has std 1. */
export class FlowMatchEulerScheduler implements Scheduler {
  /** Flow-matching models only: the sampler integrates a velocity, not a noise or data prediction. */
  static readonly predictionTypes: readonly PredictionType[] = ["flow_prediction"];
  readonly name: string;
  readonly config: FlowMatchConfig;
  readonly initNoiseSigma = 1;
  /** Ends of the training sigma range (after the static shift), which set_timesteps spaces between. */
  readonly sigmaMax: number;
  readonly sigmaMin: number;
  private _timesteps: number[] = [];
  private _sigmas: number[] = [];
  private stepIndex: number | null = null;

  constructor(config: SchedulerConfig = {}, name = "flow_euler") {
    this.name = name;
    // Flow configs carry no prediction_type; an explicit non-flow one means a model this sampler can't drive.
    const c = resolveConfig(FLOW_MATCH_DEFAULTS, config, FlowMatchEulerScheduler.predictionTypes);
    if (typeof c.shift !== "number" || !(c.shift > 0)) throw bad("shift", `must be a number > 0, got ${String(c.shift)}`);
    if (c.time_shift_type !== "exponential" && c.time_shift_type !== "linear") throw bad("time_shift_type", `must be "exponential" or "linear"`);
    if (c.shift_terminal !== null && (typeof c.shift_terminal !== "number" || !(c.shift_terminal >= 0 && c.shift_terminal < 1))) {
      throw bad("shift_terminal", "must be a number in [0, 1)");
    }
    this.config = c;
    const T = c.num_train_timesteps;
    // Training sigmas are 1, (T-1)/T, ..., 1/T; the static shift applies to them unless shifting is dynamic.
    const shiftOf = (s: number): number => (c.use_dynamic_shifting ? s : flowShift(s, c.shift));
    this.sigmaMax = shiftOf(1);
    this.sigmaMin = shiftOf(1 / T);
  }

  get timesteps(): number[] {
    return this._timesteps;
  }
  get sigmas(): number[] {
    return this._sigmas;
  }

  /**
   * diffusers `set_timesteps`: n sigmas linearly from sigma_max to sigma_min, then shifted (statically, or
   * by `options.mu` with dynamic shifting). As in diffusers the static shift is applied again here on top
   * of the already-shifted sigma_min, so the schedule matches diffusers bit for bit.
   */
  setTimesteps(numInferenceSteps: number, options: SetTimestepsOptions = {}): void {
    const c = this.config;
    const T = c.num_train_timesteps;
    validateNumSteps(numInferenceSteps, T);
    const n = numInferenceSteps;
    const mu = options.mu;
    if (c.use_dynamic_shifting && (typeof mu !== "number" || !Number.isFinite(mu))) {
      throw new ValidationError(`scheduler "${this.name}" uses dynamic shifting: setTimesteps needs a finite mu`, { field: "mu" });
    }
    let sigmas = linspace(this.sigmaMax * T, this.sigmaMin * T, n).map((t) => t / T);
    if (c.use_karras_sigmas) sigmas = karrasSigmas(sigmas[sigmas.length - 1]!, sigmas[0]!, n);
    sigmas = c.use_dynamic_shifting ? sigmas.map((s) => timeShift(c.time_shift_type, mu!, 1, s)) : sigmas.map((s) => flowShift(s, c.shift));
    if (c.shift_terminal !== null) {
      // Stretch 1 - sigma so the last sigma lands exactly on shift_terminal.
      const scale = (1 - sigmas[sigmas.length - 1]!) / (1 - c.shift_terminal);
      sigmas = sigmas.map((s) => 1 - (1 - s) / scale);
    }
    this._timesteps = sigmas.map((s) => s * T);
    this._sigmas = [...sigmas, 0];
    this.stepIndex = null;
  }

  /** diffusers' `set_begin_index`: the next run's first step is schedule index `index` (img2img). */
  setBeginIndex(index: number): void {
    this.stepIndex = checkBeginIndex(index, this._timesteps, this.name);
  }

  /** Identity: flow models take the sample as is (returns the same array). */
  scaleModelInput(sample: Float32Array, t: number): Float32Array {
    this.stepIndex = resolveStepIndex(this.stepIndex, this._timesteps, t, this.name);
    return sample;
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array, rng?: NoiseSource): { prevSample: Float32Array; predOriginalSample: Float32Array } {
    assertSameLength(modelOutput, sample);
    const i = resolveStepIndex(this.stepIndex, this._timesteps, t, this.name);
    const sigma = this._sigmas[i]!;
    const sigmaNext = this._sigmas[i + 1]!;
    const n = sample.length;
    const x0 = new Float32Array(n);
    for (let k = 0; k < n; k++) x0[k] = sample[k]! - sigma * modelOutput[k]!;
    const prev = new Float32Array(n);
    if (this.config.stochastic_sampling && sigmaNext > 0) {
      if (!rng) throw new ValidationError(`scheduler "${this.name}" with stochastic_sampling needs a noise source (rng)`, { field: "rng" });
      const noise = rng.randn(new Float32Array(n));
      for (let k = 0; k < n; k++) prev[k] = (1 - sigmaNext) * x0[k]! + sigmaNext * noise[k]!;
    } else {
      const dt = sigmaNext - sigma;
      for (let k = 0; k < n; k++) prev[k] = sample[k]! + dt * modelOutput[k]!;
    }
    this.stepIndex = i + 1;
    return { prevSample: prev, predOriginalSample: x0 };
  }

  /** Forward process (diffusers `scale_noise`): sigma * noise + (1 - sigma) * x0 at the schedule's sigma for t. */
  addNoise(original: Float32Array, noise: Float32Array, t: number): Float32Array {
    const i = noiseIndex(this._timesteps, t, this.name);
    const s = this._sigmas[i]!;
    return mixNoise(original, noise, 1 - s, s);
  }
}
