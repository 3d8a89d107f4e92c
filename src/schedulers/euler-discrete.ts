/**
 * Euler (Karras et al. 2022, Algorithm 2 without churn) with diffusers' `EulerDiscreteScheduler` semantics:
 * the sample lives in variance-exploding space `x = x0 + sigma * eps`, timesteps may be fractional.
 */
import { veToX0 } from "./math.js";
import { assertSameLength } from "./scheduler-config.js";
import { SigmaScheduler } from "./sigma-scheduler.js";
import type { NoiseSource, SchedulerConfig } from "./types.js";

/** Euler discrete sampler (`euler`, or `euler_karras` with Karras sigmas). */
export class EulerDiscreteScheduler extends SigmaScheduler {
  constructor(config: SchedulerConfig = {}, name = "euler") {
    super(config, name);
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array, _rng?: NoiseSource): { prevSample: Float32Array; predOriginalSample: Float32Array } {
    assertSameLength(modelOutput, sample);
    const i = this.stepIndexFor(t);
    const sigma = this._sigmas[i]!;
    const x0 = veToX0(this.config.prediction_type, modelOutput, sample, sigma);
    const prev = SigmaScheduler.eulerMove(sample, x0, sigma, this._sigmas[i + 1]!);
    this.stepIndex = i + 1;
    return { prevSample: prev, predOriginalSample: x0 };
  }
}
