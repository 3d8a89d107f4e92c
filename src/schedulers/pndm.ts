/**
 * PNDM (Liu et al. 2022) as Stable Diffusion 1.x ships it: diffusers' `PNDMScheduler` with
 * `skip_prk_steps: true`, i.e. pseudo linear multistep (PLMS) only. n steps make n + 1 model calls: the
 * second timestep repeats, its two outputs averaged into one second-order step, then up to fourth-order
 * Adams–Bashforth combinations of the last model outputs.
 */
import { BASE_DEFAULTS, assertSameLength, type PredictionType } from "./scheduler-config.js";
import { notReady } from "./step-index.js";
import type { SchedulerConfig } from "./types.js";
import { VpScheduler, type VpConfig } from "./vp-schedule.js";

/** PNDM config: the shared keys plus `set_alpha_to_one`. */
export type PndmConfig = VpConfig;

/** diffusers' `PNDMScheduler` class defaults. */
export const PNDM_DEFAULTS: PndmConfig = { ...BASE_DEFAULTS, timestep_spacing: "leading", set_alpha_to_one: false };

/** PLMS sampler (`pndm`). Deterministic; the model input is not scaled. */
export class PndmScheduler extends VpScheduler<PndmConfig> {
  /** diffusers' PNDM takes epsilon and v-prediction models only. */
  static readonly predictionTypes: readonly PredictionType[] = ["epsilon", "v_prediction"];
  /** Model outputs of the last steps (at most 4), newest last. */
  private ets: Float32Array[] = [];
  private counter = 0;
  private curSample: Float32Array | null = null;

  constructor(config: SchedulerConfig = {}, name = "pndm") {
    super(PNDM_DEFAULTS, config, name, PndmScheduler.predictionTypes);
  }

  setTimesteps(numInferenceSteps: number): void {
    const ts = this.spacedSchedule(numInferenceSteps);
    // diffusers: concatenate([ts[:-1], ts[-2:-1], ts[-1:]]) on the ascending list, reversed: the second step repeats.
    this._timesteps = ts.length > 1 ? [ts[0]!, ts[1]!, ...ts.slice(1)] : ts;
    this.ets = [];
    this.counter = 0;
    this.curSample = null;
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array): { prevSample: Float32Array } {
    if (this.numInferenceSteps === 0) throw notReady(this.name);
    assertSameLength(modelOutput, sample);
    const ratio = Math.floor(this.config.num_train_timesteps / this.numInferenceSteps);
    let timestep = t;
    let prevT = t - ratio;
    if (this.counter !== 1) {
      this.ets = [...this.ets.slice(-3), modelOutput];
    } else {
      // The repeated timestep: step from the first call's sample again, from t + ratio to t.
      prevT = t;
      timestep = t + ratio;
    }
    const e = this.ets;
    const n = sample.length;
    const out = new Float32Array(n);
    let from = sample;
    if (e.length === 1 && this.counter === 0) {
      out.set(modelOutput);
      this.curSample = sample;
    } else if (e.length === 1 && this.counter === 1) {
      for (let i = 0; i < n; i++) out[i] = (modelOutput[i]! + e[0]![i]!) / 2;
      from = this.curSample!;
      this.curSample = null;
    } else if (e.length === 2) {
      for (let i = 0; i < n; i++) out[i] = (3 * e[1]![i]! - e[0]![i]!) / 2;
    } else if (e.length === 3) {
      for (let i = 0; i < n; i++) out[i] = (23 * e[2]![i]! - 16 * e[1]![i]! + 5 * e[0]![i]!) / 12;
    } else {
      for (let i = 0; i < n; i++) out[i] = (55 * e[3]![i]! - 59 * e[2]![i]! + 37 * e[1]![i]! - 9 * e[0]![i]!) / 24;
    }
    this.counter++;
    return { prevSample: this.#prevSample(from, timestep, prevT, out) };
  }

  /** Formula (9) of the PNDM paper: the transfer from x_t to x_(t-δ) given the combined noise estimate. */
  #prevSample(sample: Float32Array, t: number, prevT: number, modelOutput: Float32Array): Float32Array {
    const aT = this.alphaAt(t);
    const aPrev = prevT >= 0 ? this.alphaAt(prevT) : this.finalAlphaCumprod;
    const bT = 1 - aT;
    const bPrev = 1 - aPrev;
    const v = this.config.prediction_type === "v_prediction";
    const sampleCoeff = Math.sqrt(aPrev / aT);
    const denom = aT * Math.sqrt(bPrev) + Math.sqrt(aT * bT * aPrev);
    const prev = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) {
      const eps = v ? Math.sqrt(aT) * modelOutput[i]! + Math.sqrt(bT) * sample[i]! : modelOutput[i]!;
      prev[i] = sampleCoeff * sample[i]! - ((aPrev - aT) * eps) / denom;
    }
    return prev;
  }
}
