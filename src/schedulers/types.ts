/** Random source for ancestral samplers: standard normal draws, seeded per request. */
export interface NoiseSource {
  /** Fills `out` with N(0, 1) samples and returns it. */
  randn(out: Float32Array): Float32Array;
}

/** diffusers' scheduler_config.json keys (subset we honour; unknown keys are ignored). */
export interface SchedulerConfig {
  _class_name?: string;
  num_train_timesteps?: number;
  beta_start?: number;
  beta_end?: number;
  beta_schedule?: "linear" | "scaled_linear" | "squaredcos_cap_v2";
  trained_betas?: number[] | null;
  prediction_type?: "epsilon" | "v_prediction" | "sample" | "flow_prediction";
  timestep_spacing?: "linspace" | "leading" | "trailing";
  steps_offset?: number;
  set_alpha_to_one?: boolean;
  clip_sample?: boolean;
  clip_sample_range?: number;
  use_karras_sigmas?: boolean;
  /** Karras schedules' ends instead of the training schedule's (EulerDiscreteScheduler's keys; null = unset). */
  sigma_min?: number | null;
  sigma_max?: number | null;
  rescale_betas_zero_snr?: boolean;
  shift?: number;
  original_inference_steps?: number;
  timestep_scaling?: number;
  [key: string]: unknown;
}

/**
 * The small uniform API every sampler implements (diffusers semantics). One instance per request:
 * it carries per-request state (multistep history), so never share one between requests.
 */
export interface Scheduler {
  readonly name: string;
  readonly config: Readonly<Required<Pick<SchedulerConfig, "num_train_timesteps" | "prediction_type">>> & SchedulerConfig;
  /**
   * Standard deviation of the initial noise: 1 for DDIM/DPM/LCM/flow; for Euler-type sigma_max with
   * `linspace`/`trailing` spacing and sqrt(sigma_max^2 + 1) with `leading` (as diffusers does).
   */
  readonly initNoiseSigma: number;
  /** Timesteps to feed the model, in order, after setTimesteps. */
  readonly timesteps: number[];
  /** Noise levels (Karras-style sigma) matching timesteps, plus a final 0; empty for schedulers without sigmas. */
  readonly sigmas: number[];
  /** Builds the schedule for `numInferenceSteps` steps and resets per-run state (step index, multistep history). */
  setTimesteps(numInferenceSteps: number, options?: SetTimestepsOptions): void;
  /** Scales the model input at timestep t (Euler-type divide by sqrt(sigma^2+1); identity for DDIM). */
  scaleModelInput(sample: Float32Array, t: number): Float32Array;
  /** One denoising step: returns the previous sample (and the predicted x0 when the scheduler has one). */
  step(modelOutput: Float32Array, t: number, sample: Float32Array, rng?: NoiseSource): { prevSample: Float32Array; predOriginalSample?: Float32Array };
  /**
   * Forward process at timestep t (img2img / inpainting start latents): mixes `original` with `noise` the
   * way this scheduler's sample space expects. Optional so third-party schedulers need not implement it.
   */
  addNoise?(original: Float32Array, noise: Float32Array, t: number): Float32Array;
  /**
   * diffusers' `set_begin_index`, after setTimesteps: the first step runs at this schedule index (img2img starts
   * mid-schedule). Samplers that track a step index need it where timesteps repeat; the others omit it.
   */
  setBeginIndex?(index: number): void;
}

/** Per-call extras for {@link Scheduler.setTimesteps}. */
export interface SetTimestepsOptions {
  /** Flow-matching dynamic shift (Flux `use_dynamic_shifting`), computed by the pipeline from the image size. */
  mu?: number;
}
