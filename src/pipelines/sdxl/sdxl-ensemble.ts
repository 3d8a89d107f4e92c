import { resolve as resolvePath } from "node:path";
import type { DiffusionOutput, GeneratedImage } from "../../core/output.js";
import type { ModelLimits } from "../../core/model-limits.js";
import { OmniDiffusionRequest } from "../../core/request.js";
import { ModelLoadError } from "../../errors/omni-error.js";
import type { DenoiseState, ResolvedParams } from "../denoise-state.js";
import { readModelIndex, type ModelIndex } from "../model-files.js";
import type { ModelLayout } from "../model-layout.js";
import { OnnxDiffusionPipeline } from "../onnx-diffusion-pipeline.js";
import { generateOnce } from "../generate-once.js";
import type { GenerateOptions, PipelineInfo, PipelineLoadOptions, SteppablePipeline, UnetCall } from "../types.js";

/** model_index.json `_class_name` of a base + refiner folder. */
export const SDXL_ENSEMBLE_CLASS = "OmniSdxlEnsemblePipeline";
/** diffusers' documented switch point for the ensemble of experts (`high_noise_frac`). */
export const DEFAULT_DENOISING_END = 0.8;

/** The conditioning fields a state swaps at the handoff (the interface marks them readonly for everyone else). */
type Swappable = { -readonly [K in "cond" | "uncond" | "added"]: DenoiseState[K] };

/**
 * SDXL's "ensemble of experts" as one model: the base denoises the high-noise part of the schedule, the refiner
 * the rest, on the same latents (diffusers' `denoising_end` on the base with `output_type="latent"`, then
 * `denoising_start` on the refiner: no noise added, the refiner's sampler starting at the same step). A request's
 * `denoisingEnd` (default the folder's `denoising_end`, else 0.8) is the switch point; 1 runs the base alone.
 *
 * The folder holds only a model_index.json naming the two exports:
 * `{"_class_name": "OmniSdxlEnsemblePipeline", "base": "../sdxl-base", "refiner": "../sdxl-refiner", "denoising_end": 0.8}`.
 * Each state keeps one sampler across the handoff, so both exports must share their scheduler config (they do
 * as Stability ships them); the refiner's prompts are encoded at `prepare`, with the base's.
 */
export class SdxlEnsemblePipeline implements SteppablePipeline {
  readonly modelDir: string;
  readonly base: OnnxDiffusionPipeline;
  readonly refiner: OnnxDiffusionPipeline;
  readonly #denoisingEnd: number;
  /** Per state: the step the refiner takes over at, and its conditioning until then. */
  readonly #handoff = new WeakMap<DenoiseState, { at: number; refiner: Swappable | null }>();

  private constructor(modelDir: string, base: OnnxDiffusionPipeline, refiner: OnnxDiffusionPipeline, denoisingEnd: number) {
    this.modelDir = modelDir;
    this.base = base;
    this.refiner = refiner;
    this.#denoisingEnd = denoisingEnd;
  }

  static async load(modelDir: string, index: ModelIndex, opts: PipelineLoadOptions): Promise<SdxlEnsemblePipeline> {
    const part = (key: "base" | "refiner") => {
      const rel = index[key];
      if (typeof rel !== "string" || !rel) throw new ModelLoadError(`${modelDir}/model_index.json names no "${key}" folder (an ${SDXL_ENSEMBLE_CLASS} needs "base" and "refiner")`, { data: { modelDir, key } });
      return resolvePath(modelDir, rel);
    };
    const end = index.denoising_end ?? DEFAULT_DENOISING_END;
    if (typeof end !== "number" || !(end > 0 && end <= 1)) throw new ModelLoadError(`${modelDir}/model_index.json: denoising_end must be in (0, 1], got ${JSON.stringify(end)}`, { data: { modelDir } });
    const [baseDir, refinerDir] = [part("base"), part("refiner")];
    const base = await OnnxDiffusionPipeline.load(baseDir, readModelIndex(baseDir), opts);
    const refiner = await OnnxDiffusionPipeline.load(refinerDir, readModelIndex(refinerDir), opts);
    const [b, r] = [base.schedulerConfig, refiner.schedulerConfig];
    if (b._class_name !== r._class_name || b.timestep_spacing !== r.timestep_spacing) {
      await Promise.all([base.release(), refiner.release()]);
      throw new ModelLoadError(`the base (${b._class_name}, ${b.timestep_spacing}) and the refiner (${r._class_name}, ${r.timestep_spacing}) must share their scheduler: each image keeps one sampler across the handoff`, {
        data: { modelDir },
      });
    }
    return new SdxlEnsemblePipeline(modelDir, base, refiner, end);
  }

  get maxBatchRows(): number {
    return this.base.maxBatchRows;
  }

  set maxBatchRows(n: number) {
    this.base.maxBatchRows = n;
    this.refiner.maxBatchRows = n;
  }

  get info(): PipelineInfo {
    const b = this.base.info;
    const r = this.refiner.info;
    return { ...b, modelDir: this.modelDir, className: SDXL_ENSEMBLE_CLASS, components: [...b.components, ...r.components.map((c) => `refiner/${c}`)], asleep: b.asleep && r.asleep };
  }

  /** The base's limits; the weights are both experts' (one worker holds the two). */
  describe(): ModelLimits {
    const b = this.base.describe();
    const r = this.refiner.describe();
    return b.memory && r.memory ? { ...b, memory: { ...b.memory, weightBytes: b.memory.weightBytes + r.memory.weightBytes } } : b;
  }

  /** The base's layout, with the ensemble's switch point and the refiner's conditioning (what `info` prints). */
  layout(): ModelLayout {
    const base = this.base.layout();
    return { ...base, sdxl: { ...base.sdxl!, kind: "ensemble", denoisingEnd: this.#denoisingEnd, refiner: this.refiner.layout().sdxl } };
  }

  resolve(r: OmniDiffusionRequest): ResolvedParams {
    // The base checks everything but the switch point and the refiner's aesthetic scores, which are ours.
    const forBase = Object.assign(Object.create(OmniDiffusionRequest.prototype) as OmniDiffusionRequest, r, { denoisingEnd: null, aestheticScore: null, negativeAestheticScore: null });
    return this.base.resolve(forBase);
  }

  validate(r: OmniDiffusionRequest): void {
    this.resolve(r);
  }

  /** The base's states (noise, base conditioning) plus the refiner's conditioning and the handoff step of each. */
  async prepare(requests: OmniDiffusionRequest[], resolved?: ResolvedParams[]): Promise<DenoiseState[]> {
    const params = resolved ?? requests.map((r) => this.resolve(r));
    const states = await this.base.prepare(requests, params);
    // The refiner's own prepare encodes its prompts (text_encoder_2, 5 time ids); its noise and samplers are not used.
    const refined = await this.refiner.prepare(requests, params);
    states.forEach((s, i) => {
      const at = handoffStep(s.timesteps, s.samples[0]!.scheduler.config.num_train_timesteps, s.request.denoisingEnd ?? this.#denoisingEnd);
      const r = refined[i]!;
      this.#handoff.set(s, { at, refiner: { cond: r.cond, uncond: r.uncond, added: r.added } });
    });
    return states;
  }

  async step(states: DenoiseState[]): Promise<UnetCall[]> {
    const early: DenoiseState[] = [];
    const late: DenoiseState[] = [];
    for (const s of states) {
      const h = this.#handoff.get(s)!;
      if (s.stepIndex < h.at) early.push(s);
      else {
        if (h.refiner) Object.assign(s as unknown as Swappable, h.refiner); // the handoff: the refiner's conditioning from here on
        h.refiner = null;
        late.push(s);
      }
    }
    return [...(early.length ? await this.base.step(early) : []), ...(late.length ? await this.refiner.step(late) : [])];
  }

  /** Final images by the refiner's VAE; previews by whichever expert holds the state. */
  async decode(states: DenoiseState[], preview = false): Promise<GeneratedImage[][]> {
    if (!preview) return this.refiner.decode(states);
    const out = await Promise.all(states.map((s) => (s.stepIndex < this.#handoff.get(s)!.at ? this.base : this.refiner).decode([s], true)));
    return out.map((o) => o[0]!);
  }

  async release(): Promise<void> {
    await Promise.all([this.base.release(), this.refiner.release()]);
  }

  async reload(): Promise<void> {
    await Promise.all([this.base.reload(), this.refiner.reload()]);
  }

  /** One-shot generation (see generateOnce). */
  generate(requests: OmniDiffusionRequest[], opts: GenerateOptions = {}): Promise<DiffusionOutput> {
    return generateOnce(this, requests, opts);
  }

}

/**
 * The step the refiner takes over at: diffusers' cutoff `int(round(T - denoisingEnd × T))`; the base runs the
 * timesteps at or above it (its `denoising_end`), the refiner those below (its `denoising_start`).
 */
export function handoffStep(timesteps: readonly number[], numTrainTimesteps: number, denoisingEnd: number): number {
  const cutoff = Math.round(numTrainTimesteps - denoisingEnd * numTrainTimesteps);
  return timesteps.filter((t) => t >= cutoff).length;
}
