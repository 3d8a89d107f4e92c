import { checkRequestLimits, DEFAULT_REQUEST_LIMITS, type RequestLimits } from "../core/limits.js";
import type { ModelLimits } from "../core/model-limits.js";
import type { OmniDiffusionRequest } from "../core/request.js";
import { createScheduler, SCHEDULER_NAMES } from "../schedulers/index.js";
import type { Scheduler, SchedulerConfig } from "../schedulers/types.js";
import type { ResolvedParams } from "./denoise-state.js";
import { checkCanEdit, effectiveStrength, requestSize } from "./init-image.js";
import type { OnnxModel } from "./onnx-model.js";
import { randomSeed } from "./random.js";
import type { PipelineInfo } from "./types.js";

/** What a pipeline knows about its model that resolving a request needs. */
export interface ResolveContext {
  defaults: PipelineInfo["defaults"];
  limits: ModelLimits;
  /** For img2img/inpainting: whether the model works in latent space and its VAE encoder, if any. */
  edit: { latent: boolean; encoder: OnnxModel | null; className: string; modelDir: string };
}

/**
 * Applies a model's defaults to a request and checks that the model can run it, once per request: the worker
 * carries the result into the step loop. The model's size and sampler rules are core/limits.ts's own function
 * ({@link checkModelRules}), not a second wording of them: the executor contract (`omni-diffusion/testing`)
 * has a worker refuse what its model cannot run even when no engine is in front. Beyond those, only what a
 * built sampler or the loaded model knows: the sampler's own step rules, whether the model can edit.
 */
export class RequestResolver {
  readonly #schedulerConfig: SchedulerConfig;
  /** `scheduler|steps` → a sampler that accepted the pair: resolve builds a sampler only for a pair not seen yet. */
  readonly #checked = new Map<string, Scheduler>();

  constructor(schedulerConfig: SchedulerConfig) {
    this.#schedulerConfig = schedulerConfig;
  }

  resolve(r: OmniDiffusionRequest, ctx: ResolveContext): ResolvedParams {
    const { defaults, limits } = ctx;
    checkModelRules(r, limits);
    const { width, height } = requestSize(r, limits.nativeWidth, limits.nativeHeight);
    const scheduler = r.scheduler ?? defaults.scheduler;
    const steps = r.numInferenceSteps ?? defaults.numInferenceSteps;
    const probe = this.#checkSchedule(scheduler, steps); // throws ValidationError on a bad name or count
    if (r.image) checkCanEdit(probe, ctx.edit);
    return {
      width,
      height,
      numInferenceSteps: steps,
      guidanceScale: r.guidanceScale ?? defaults.guidanceScale,
      guidanceRescale: r.guidanceRescale ?? 0,
      scheduler,
      seed: r.seed ?? randomSeed(),
      numOutputs: r.numOutputsPerPrompt,
      negativePrompt: r.negativePrompt ?? "",
      strength: effectiveStrength(r),
    };
  }

  /**
   * A sampler set to `steps` (never stepped): throws its ValidationError for a bad name or step count. Samplers
   * own their step rules (LCM's `original_inference_steps`, ...), so the first request of a pair builds one;
   * later requests of the pair get the cached one instead of a throwaway sampler each.
   */
  #checkSchedule(scheduler: string, steps: number): Scheduler {
    const key = `${scheduler}|${steps}`;
    const cached = this.#checked.get(key);
    if (cached) return cached;
    const probe = createScheduler(scheduler, this.#schedulerConfig);
    probe.setTimesteps(steps);
    if (this.#checked.size >= 1024) this.#checked.clear(); // bounded: steps are client input
    this.#checked.set(key, probe);
    return probe;
  }
}

/** A direct caller's limits: the model's own rules (sizes it can run, samplers that fit, memory), no server caps. */
const DIRECT_CALL_LIMITS: RequestLimits = {
  ...DEFAULT_REQUEST_LIMITS,
  allowNonNativeSizes: true,
  maxSteps: Number.MAX_SAFE_INTEGER,
  maxOutputsPerPrompt: Number.MAX_SAFE_INTEGER,
};

/**
 * The model's size, sampler and memory rules, by the same function and in the same words as the engine's
 * check (core/limits.ts), without a server's caps: what the worker itself must refuse.
 */
export function checkModelRules(r: OmniDiffusionRequest, limits: ModelLimits): void {
  checkRequestLimits(r, DIRECT_CALL_LIMITS, limits, { knownSchedulers: SCHEDULER_NAMES });
}
