/**
 * DPM-Solver++ 2M (Lu et al. 2022) with diffusers' `DPMSolverMultistepScheduler` semantics
 * (algorithm_type "dpmsolver++", data prediction, multistep, first-order warm-up and final step).
 */
import { ValidationError } from "../errors/omni-error.js";
import {
  alphasCumprod,
  interp,
  karrasRange,
  karrasSigmas,
  linspace,
  makeBetas,
  mixNoise,
  roundHalfEven,
  sigmaToT,
  sigmasFromAlphasCumprod,
  vpToX0Eps,
} from "./math.js";
import {
  BASE_DEFAULTS,
  assertSameLength,
  resolveConfig,
  validateNumSteps,
  VP_PREDICTION_TYPES,
  type PredictionType,
  type ResolvedSchedulerConfig,
} from "./scheduler-config.js";
import { checkBeginIndex, noiseIndex, notReady, resolveStepIndex } from "./step-index.js";
import type { NoiseSource, Scheduler, SchedulerConfig } from "./types.js";

/** DPM-Solver config: the shared keys plus the solver options we implement. */
export type DpmSolverConfig = ResolvedSchedulerConfig &
  Required<Pick<SchedulerConfig, "use_karras_sigmas">> & {
    /** 1 (DPM-Solver++ 1S, i.e. DDIM) or 2 (2M). Order 3 is not implemented. */
    solver_order: number;
    /** Only "dpmsolver++" (data prediction, deterministic). */
    algorithm_type: "dpmsolver++";
    /** How the second-order correction is weighted: "midpoint" (diffusers default) or "heun". */
    solver_type: "midpoint" | "heun";
    /** Use first order on the last step (and second order on the second-to-last) when n < 15, for stability. */
    lower_order_final: boolean;
    /** Force first order on the last step whatever n is. */
    euler_at_final: boolean;
    /** Last sigma: "zero" (sample fully denoised; implies a first-order last step) or the training sigma_min. */
    final_sigmas_type: "zero" | "sigma_min";
    /** Skip timesteps whose log-SNR lambda falls below this (cosine schedules); -Infinity = none. */
    lambda_min_clipped: number;
  };

/** diffusers' `DPMSolverMultistepScheduler` class defaults. */
export const DPM_SOLVER_DEFAULTS: DpmSolverConfig = {
  ...BASE_DEFAULTS,
  use_karras_sigmas: false,
  solver_order: 2,
  algorithm_type: "dpmsolver++",
  solver_type: "midpoint",
  lower_order_final: true,
  euler_at_final: false,
  final_sigmas_type: "zero",
  lambda_min_clipped: -Infinity,
};

function bad(key: string, message: string): ValidationError {
  return new ValidationError(`scheduler config ${key}: ${message}`, { field: "scheduler", data: { key } });
}

/** Splits a Karras sigma into the VP coefficients: alpha_t = 1/sqrt(sigma^2+1), sigma_t = sigma * alpha_t. */
function alphaSigma(sigma: number): { alpha: number; sig: number } {
  const alpha = 1 / Math.sqrt(sigma * sigma + 1);
  return { alpha, sig: sigma * alpha };
}

/** Half log-SNR lambda = log(alpha_t) - log(sigma_t); +Infinity at sigma = 0. */
function lambdaOf(sigma: number): number {
  const { alpha, sig } = alphaSigma(sigma);
  return Math.log(alpha) - Math.log(sig);
}

/** DPM-Solver++ 2M sampler (`dpmpp_2m`, or `dpmpp_2m_karras` with Karras sigmas). Deterministic. */
export class DpmSolverMultistepScheduler implements Scheduler {
  /** Prediction types this sampler can drive (schedulers/index.ts lists per model only the samplers that fit). */
  static readonly predictionTypes: readonly PredictionType[] = VP_PREDICTION_TYPES;
  readonly name: string;
  readonly config: DpmSolverConfig;
  readonly initNoiseSigma = 1;
  readonly alphasCumprod: Float64Array;
  private readonly trainSigmas: Float64Array;
  private readonly logSigmas: Float64Array;
  private _timesteps: number[] = [];
  private _sigmas: number[] = [];
  private stepIndex: number | null = null;
  /** Converted (x0) outputs of the previous and current step: the multistep history. */
  private modelOutputs: (Float32Array | null)[] = [];
  private lowerOrderNums = 0;

  constructor(config: SchedulerConfig = {}, name = "dpmpp_2m") {
    this.name = name;
    const c = resolveConfig(DPM_SOLVER_DEFAULTS, config, DpmSolverMultistepScheduler.predictionTypes);
    // Like diffusers, accept configs of sibling multistep solvers: UniPC's "bh1"/"bh2" and DEIS's "logrho"
    // solver types become "midpoint", DEIS's algorithm becomes "dpmsolver++".
    if ((["logrho", "bh1", "bh2"] as unknown[]).includes(c.solver_type)) c.solver_type = "midpoint";
    if ((c.algorithm_type as unknown) === "deis") c.algorithm_type = "dpmsolver++";
    if (c.solver_order !== 1 && c.solver_order !== 2) throw bad("solver_order", `only 1 and 2 are implemented, got ${String(c.solver_order)}`);
    if (c.algorithm_type !== "dpmsolver++") throw bad("algorithm_type", `only "dpmsolver++" is implemented, got "${String(c.algorithm_type)}"`);
    if (c.solver_type !== "midpoint" && c.solver_type !== "heun") throw bad("solver_type", `must be "midpoint" or "heun"`);
    if (c.final_sigmas_type !== "zero" && c.final_sigmas_type !== "sigma_min") throw bad("final_sigmas_type", `must be "zero" or "sigma_min"`);
    if (typeof c.lambda_min_clipped !== "number") throw bad("lambda_min_clipped", "must be a number");
    this.config = c;
    const ac = alphasCumprod(makeBetas(c));
    // Same zero-SNR guard as Euler: keep sigma[T-1] finite.
    if (c.rescale_betas_zero_snr) ac[ac.length - 1] = 2 ** -24;
    this.alphasCumprod = ac;
    this.trainSigmas = sigmasFromAlphasCumprod(ac);
    this.logSigmas = this.trainSigmas.map(Math.log);
  }

  get timesteps(): number[] {
    return this._timesteps;
  }
  get sigmas(): number[] {
    return this._sigmas;
  }

  setTimesteps(numInferenceSteps: number): void {
    const c = this.config;
    const T = c.num_train_timesteps;
    validateNumSteps(numInferenceSteps, T);
    const n = numInferenceSteps;
    // lambda_min_clipped trims the low-SNR (high-t) end: count training steps, from the top, below the floor.
    let clipped = 0;
    if (c.lambda_min_clipped > -Infinity) {
      for (let t = T - 1; t >= 0; t--) {
        if (lambdaOf(this.trainSigmas[t]!) < c.lambda_min_clipped) clipped++;
        else break;
      }
    }
    const last = T - clipped;

    // DPM-Solver lays out n+1 points and drops the final one (t = 0), unlike DDIM/Euler.
    let timesteps: number[];
    if (c.timestep_spacing === "linspace") {
      timesteps = linspace(0, last - 1, n + 1).map(roundHalfEven).reverse().slice(0, n);
    } else if (c.timestep_spacing === "leading") {
      const ratio = Math.floor(last / (n + 1));
      timesteps = [];
      for (let i = n; i >= 1; i--) timesteps.push(i * ratio + c.steps_offset);
    } else {
      const ratio = T / n;
      timesteps = [];
      for (let i = 0; i < n; i++) timesteps.push(roundHalfEven(last - i * ratio) - 1);
    }

    let sigmas: number[];
    if (c.use_karras_sigmas) {
      // Karras over the full training range; timesteps are the (rounded) matching training steps.
      const { sigmaMin, sigmaMax } = karrasRange(c, this.trainSigmas[0]!, this.trainSigmas[T - 1]!);
      sigmas = karrasSigmas(sigmaMin, sigmaMax, n);
      timesteps = sigmas.map((s) => roundHalfEven(sigmaToT(s, this.logSigmas)));
    } else {
      const grid = Array.from(this.trainSigmas, (_, i) => i);
      sigmas = timesteps.map((t) => interp(t, grid, this.trainSigmas));
    }
    const lastSigma = c.final_sigmas_type === "sigma_min" ? (c.use_karras_sigmas ? sigmas[sigmas.length - 1]! : this.trainSigmas[0]!) : 0;
    this._timesteps = timesteps;
    this._sigmas = [...sigmas, lastSigma];
    this.stepIndex = null;
    this.modelOutputs = new Array<Float32Array | null>(c.solver_order).fill(null);
    this.lowerOrderNums = 0;
  }

  /** diffusers' `set_begin_index`: the next run's first step is schedule index `index` (img2img). */
  setBeginIndex(index: number): void {
    this.stepIndex = checkBeginIndex(index, this._timesteps, this.name);
  }

  /** Identity: DPM-Solver works on the VP sample the model sees (returns the same array). */
  scaleModelInput(sample: Float32Array, _t: number): Float32Array {
    return sample;
  }

  private index(t: number): number {
    // diffusers' DPM-Solver falls back to the last step for an unknown timestep instead of failing.
    return resolveStepIndex(this.stepIndex, this._timesteps, t, this.name, this._timesteps.length - 1);
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array, _rng?: NoiseSource): { prevSample: Float32Array; predOriginalSample: Float32Array } {
    assertSameLength(modelOutput, sample);
    const c = this.config;
    const i = this.index(t);
    const n = this._timesteps.length;
    const lowerOrderFinal = i === n - 1 && (c.euler_at_final || (c.lower_order_final && n < 15) || c.final_sigmas_type === "zero");

    const { alpha: a0, sig: s0 } = alphaSigma(this._sigmas[i]!);
    const x0 = vpToX0Eps(c.prediction_type, modelOutput, sample, a0, s0).x0;
    this.modelOutputs.shift();
    this.modelOutputs.push(x0);

    // diffusers' `lower_order_second` only demotes third order, so with order <= 2 it never applies.
    const useFirst = c.solver_order === 1 || this.lowerOrderNums < 1 || lowerOrderFinal;
    const prev = useFirst ? this.firstOrder(i, sample, x0) : this.secondOrder(i, sample);
    if (this.lowerOrderNums < c.solver_order) this.lowerOrderNums++;
    this.stepIndex = i + 1;
    return { prevSample: prev, predOriginalSample: x0 };
  }

  /** DPM-Solver++ 1: x_t = (sigma_t/sigma_s) x - alpha_t (e^{-h} - 1) x0, i.e. DDIM in lambda space. */
  private firstOrder(i: number, sample: Float32Array, x0: Float32Array): Float32Array {
    const { alpha: at, sig: st } = alphaSigma(this._sigmas[i + 1]!);
    const { sig: ss } = alphaSigma(this._sigmas[i]!);
    const h = lambdaOf(this._sigmas[i + 1]!) - lambdaOf(this._sigmas[i]!);
    // At sigma_next = 0, h = +Inf and e^{-h} = 0: the step returns x0 exactly.
    const cx = st / ss;
    const c0 = -at * (Math.exp(-h) - 1);
    const out = new Float32Array(sample.length);
    for (let k = 0; k < out.length; k++) out[k] = cx * sample[k]! + c0 * x0[k]!;
    return out;
  }

  /** DPM-Solver++ 2M: first-order step plus a correction from the previous x0 (midpoint or Heun weighting). */
  private secondOrder(i: number, sample: Float32Array): Float32Array {
    const m0 = this.modelOutputs[this.modelOutputs.length - 1]!;
    const m1 = this.modelOutputs[this.modelOutputs.length - 2]!;
    const sigT = this._sigmas[i + 1]!;
    const sigS0 = this._sigmas[i]!;
    const sigS1 = this._sigmas[i - 1]!;
    const { alpha: at, sig: st } = alphaSigma(sigT);
    const { sig: ss0 } = alphaSigma(sigS0);
    const lt = lambdaOf(sigT);
    const l0 = lambdaOf(sigS0);
    const l1 = lambdaOf(sigS1);
    const h = lt - l0;
    const r0 = (l0 - l1) / h;
    const em1 = Math.exp(-h) - 1;
    const cx = st / ss0;
    const cD0 = -at * em1;
    const cD1 = this.config.solver_type === "midpoint" ? -0.5 * at * em1 : at * (em1 / h + 1);
    const out = new Float32Array(sample.length);
    for (let k = 0; k < out.length; k++) {
      const d1 = (m0[k]! - m1[k]!) / r0;
      out[k] = cx * sample[k]! + cD0 * m0[k]! + cD1 * d1;
    }
    return out;
  }

  /** VP forward process at the schedule's sigma for t: alpha_t * x0 + sigma_t * noise. */
  addNoise(original: Float32Array, noise: Float32Array, t: number): Float32Array {
    const { alpha, sig } = alphaSigma(this._sigmas[noiseIndex(this._timesteps, t, this.name)]!);
    return mixNoise(original, noise, alpha, sig);
  }
}
