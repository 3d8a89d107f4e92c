/**
 * Euler ancestral (k-diffusion `sample_euler_ancestral`) with diffusers' `EulerAncestralDiscreteScheduler`
 * semantics: each step goes deterministically down to sigma_down, then adds fresh noise of std sigma_up,
 * so that sigma_down^2 + sigma_up^2 = sigma_next^2.
 */
import { ValidationError } from "../errors/omni-error.js";
import { veToX0 } from "./math.js";
import { assertSameLength } from "./scheduler-config.js";
import { SigmaScheduler } from "./sigma-scheduler.js";
import type { NoiseSource, SchedulerConfig } from "./types.js";

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
export class EulerAncestralScheduler extends SigmaScheduler {
  constructor(config: SchedulerConfig = {}, name = "euler_a") {
    // diffusers' ancestral class has no Karras option; a config carrying one (from EulerDiscrete) is ignored.
    super(config, name, { use_karras_sigmas: false });
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array, rng?: NoiseSource): { prevSample: Float32Array; predOriginalSample: Float32Array } {
    assertSameLength(modelOutput, sample);
    const i = this.stepIndexFor(t);
    const sigma = this._sigmas[i]!;
    const { sigmaUp, sigmaDown } = ancestralSigmas(sigma, this._sigmas[i + 1]!);
    const x0 = veToX0(this.config.prediction_type, modelOutput, sample, sigma);
    const prev = SigmaScheduler.eulerMove(sample, x0, sigma, sigmaDown);
    // sigma_up is 0 on the final step (sigma_next = 0), so no noise source is needed there.
    if (sigmaUp > 0) {
      if (!rng) throw new ValidationError(`scheduler "${this.name}" needs a noise source (rng) for its ancestral steps`, { field: "rng" });
      const noise = rng.randn(new Float32Array(prev.length));
      for (let k = 0; k < prev.length; k++) prev[k] = prev[k]! + noise[k]! * sigmaUp;
    }
    this.stepIndex = i + 1;
    return { prevSample: prev, predOriginalSample: x0 };
  }
}
