import { existsSync } from "node:fs";
import { totalmem } from "node:os";
import { join } from "node:path";
import type { DiffusionOutput, GeneratedImage } from "../core/output.js";
import type { OmniDiffusionRequest } from "../core/request.js";
import { ValidationError } from "../errors/omni-error.js";
import type { ModelLimits } from "../core/model-limits.js";
import { memoryBudgetBytes } from "../core/memory-estimate.js";
import { createScheduler } from "../schedulers/index.js";
import type { SchedulerConfig } from "../schedulers/types.js";
import { concatFloat32, denoiseFailure, isFinished, rowsOf, shapeKey, type DenoiseState, type ResolvedParams } from "./denoise-state.js";
import { componentPath, onnxWeightBytes, readModelJson, type ModelIndex } from "./model-files.js";
import type { ModelLayout } from "./model-layout.js";
import { OnnxModel, floatData, memoryTuningFor, type SessionOptions } from "./onnx-model.js";
import { ImageDecoder } from "./image-decoder.js";
import { TINY_VAE_FOLDER, TinyVae } from "./tiny-vae.js";
import { PromptEncoder } from "./prompt-encoder.js";
import { SeededNormal } from "./random.js";
import { applyGuidance } from "./tensor-ops.js";
import { unetFeeds, type UnetRow } from "./unet-feeds.js";
import { deviceEligible, deviceStep, releaseState, syncToHost } from "./device-step.js";
import { hostStep } from "./host-step.js";
import { DeviceTensors } from "./device-tensors.js";
import { float16Line, readWebGpuLimits } from "./webgpu-limits.js";
import { describeOnnxModel } from "./model-limits.js";
import { RequestResolver } from "./resolve-request.js";
import { encodeInitImage, latentMask, startSample, type EditState } from "./init-image.js";
import { blendKnownRegion } from "./inpaint.js";
import { generateOnce } from "./generate-once.js";
import { SdxlConditioner, refuseSdxlFields } from "./sdxl/sdxl-conditioner.js";
import { sdxlDefaults } from "./sdxl/sdxl-defaults.js";
import { SDXL_LATENT_RGB_FACTORS } from "./latent-preview.js";
import type { GenerateOptions, PipelineInfo, PipelineLoadOptions, SteppablePipeline, UnetCall } from "./types.js";

/**
 * Text-to-image on ONNX components in the diffusers ONNX layout (text_encoder → unet → vae_decoder),
 * the shape of Stable Diffusion 1.x/2.x, SD-Turbo, LCM exports and the shipped tiny-shapes model.
 *
 * The step-level interface (`prepare`, `step`, `decode`) is what the engines drive; `generate` chains them.
 * One `step` call advances every given state by one denoising step, in one UNet call per latent shape,
 * each row with its own timestep, so requests at different steps share a call.
 */
export class OnnxDiffusionPipeline implements SteppablePipeline {
  readonly modelDir: string;
  readonly className: string;
  readonly #textEncoder: OnnxModel;
  /** SDXL exports (text_encoder_2): two encoders, pooled text and size conditioning (src/pipelines/sdxl/). */
  readonly #xl: SdxlConditioner | null;
  readonly #unet: OnnxModel;
  readonly #vae: OnnxModel;
  /** Present when the folder has vae_encoder/model.onnx (diffusers ONNX layout): img2img on latent models needs it. */
  readonly #vaeEncoder: OnnxModel | null;
  /** The model's tiny VAE (its `tiny_vae/` folder or `tinyVae`), for previews and `vae: "tiny"` requests. */
  readonly #tinyVae: TinyVae | null;
  readonly #decoder: ImageDecoder;
  readonly #prompts: PromptEncoder;
  readonly #schedulerConfig: SchedulerConfig;
  readonly #latentChannels: number;
  readonly #vaeScale: number;
  readonly #scalingFactor: number;
  #info: Omit<PipelineInfo, "components" | "asleep">;
  readonly #unetConfig: Record<string, unknown>;
  readonly #vaeConfig: Record<string, unknown>;
  /** Bytes of the weights its sessions load (ModelLimits.memory.weightBytes). */
  readonly #weightBytes: number;
  /** What this worker may use, bytes (requests whose estimate is above it are refused; 0: unchecked). */
  readonly #memoryBudget: number;
  /** Query-row slices asked for the UNet's attention (memoryTuningFor); in effect where the UNet had attention to slice. */
  readonly #attentionSlices: number;
  /** Images per full-VAE call (1 with VAE slicing). */
  readonly #decodeImagesPerCall: number;
  #limits: ModelLimits | null = null;
  /** Applies defaults and checks requests; caches the sampler checks per (scheduler, steps). */
  readonly #resolver: RequestResolver;
  /** Rows per UNet call; bigger batches are split. */
  maxBatchRows = 64;
  /** On webgpu: the device-resident tensors and the host↔device byte counter (see device-step.ts); null elsewhere. */
  readonly deviceTensors: DeviceTensors | null;
  /** On webgpu: `on` keeps latents on the device, `host-samplers` runs every sampler on the host, `off` the host path (bench). */
  deviceSteps: "on" | "host-samplers" | "off" = "on";

  private constructor(modelDir: string, index: ModelIndex, opts: PipelineLoadOptions) {
    this.modelDir = modelDir;
    this.className = index._class_name;
    const paths = { unet: componentPath(modelDir, "unet"), vae_decoder: componentPath(modelDir, "vae_decoder") };
    const encoder = join(modelDir, "vae_encoder", "model.onnx");
    const tinyDir = TinyVae.locate(modelDir, opts.tinyVae);
    // Sized before any session exists: big models run their sessions without the arena (memoryTuningFor).
    // Fused LoRA weights are held inline beside the exported ones (load.ts passes their resident bytes).
    this.#weightBytes = onnxWeightBytes(TinyVae.modelOnnxPaths(modelDir, opts.tinyVae)) + ((opts as SessionOptions).graphEditBytes ?? 0);
    const sessionOpts = { ...opts, memory: memoryTuningFor(this.#weightBytes, opts.memory) };
    this.#attentionSlices = sessionOpts.memory.attentionSlices;
    this.#decodeImagesPerCall = sessionOpts.memory.vaeSlicing ? 1 : Infinity;
    this.#xl = SdxlConditioner.detect(modelDir) ? new SdxlConditioner(modelDir, index, sessionOpts) : null;
    this.#textEncoder = this.#xl?.encoders.models[0] ?? new OnnxModel("text_encoder", componentPath(modelDir, "text_encoder"), sessionOpts);
    this.deviceTensors = opts.device === "webgpu" ? new DeviceTensors() : null;
    // On webgpu the UNet's output stays in a GPU buffer: the next step's small graphs read it there.
    this.#unet = new OnnxModel("unet", paths.unet, this.deviceTensors ? { ...sessionOpts, outputLocation: "gpu-buffer" } : sessionOpts);
    this.#vae = new OnnxModel("vae_decoder", paths.vae_decoder, sessionOpts);
    this.#vaeEncoder = existsSync(encoder) ? new OnnxModel("vae_encoder", encoder, sessionOpts) : null;
    this.#tinyVae = tinyDir ? new TinyVae(tinyDir, sessionOpts) : null;
    this.#prompts = new PromptEncoder(modelDir, this.#textEncoder, this.#xl?.tokenizerFolder);
    this.#schedulerConfig = readModelJson<SchedulerConfig>(modelDir, "scheduler/scheduler_config.json")!;
    this.#resolver = new RequestResolver(this.#schedulerConfig);
    const unetCfg = readModelJson<Record<string, any>>(modelDir, "unet/config.json", false) ?? {};
    const vaeCfg = readModelJson<Record<string, any>>(modelDir, "vae_decoder/config.json", false) ?? {};
    this.#vaeConfig = vaeCfg;
    this.#memoryBudget = opts.memoryBudgetBytes ?? memoryBudgetBytes(totalmem(), 1);
    this.#latentChannels = unetCfg.in_channels ?? vaeCfg.latent_channels ?? 4;
    this.#vaeScale = 2 ** (((vaeCfg.block_out_channels as unknown[] | undefined)?.length ?? 4) - 1);
    this.#scalingFactor = vaeCfg.scaling_factor ?? 0.18215;
    this.#unetConfig = unetCfg;
    this.#decoder = new ImageDecoder(
      { vae: this.#vae, tiny: this.#tinyVae, scalingFactor: this.#scalingFactor, vaeScale: this.#vaeScale, latentChannels: this.#latentChannels, previewDecoder: opts.previewDecoder ?? "auto", fullDecodeImagesPerCall: this.#decodeImagesPerCall, latentRgbFactors: this.#xl ? SDXL_LATENT_RGB_FACTORS : undefined },
      modelDir,
    );
    const sample = (unetCfg.sample_size ?? 64) * this.#vaeScale;
    const d = (index._omni_defaults ?? {}) as Record<string, any>;
    // Guidance-distilled (LCM) exports: diffusers' LatentConsistencyModelPipeline defaults, 4 steps at guidance 8.5.
    const lcm = unetCfg.time_cond_proj_dim != null || /LatentConsistency/.test(this.className);
    this.#info = {
      modelDir,
      className: this.className,
      width: sample,
      height: sample,
      sizeMultiple: unetCfg.size_multiple ?? this.#vaeScale * 8,
      defaults: {
        numInferenceSteps: d.num_inference_steps ?? (this.#xl ? sdxlDefaults(this.#schedulerConfig).numInferenceSteps : lcm ? 4 : 20),
        guidanceScale: d.guidance_scale ?? (this.#xl ? sdxlDefaults(this.#schedulerConfig).guidanceScale : lcm ? 8.5 : 7.5),
        scheduler: d.scheduler ?? createScheduler(null, this.#schedulerConfig).name,
      },
    };
  }

  /** scheduler/scheduler_config.json as loaded (the SDXL ensemble checks its experts share one). */
  get schedulerConfig(): Readonly<SchedulerConfig> {
    return this.#schedulerConfig;
  }

  /** Loads the three sessions and checks the UNet's inputs. */
  static async load(modelDir: string, index: ModelIndex, opts: PipelineLoadOptions): Promise<OnnxDiffusionPipeline> {
    const p = new OnnxDiffusionPipeline(modelDir, index, opts);
    await p.reload();
    return p;
  }

  /** The ONNX components this pipeline loads (the VAE encoder only when the folder has one). */
  get #models(): OnnxModel[] {
    return [...(this.#xl?.encoders.models ?? [this.#textEncoder]), this.#unet, this.#vae, ...(this.#vaeEncoder ? [this.#vaeEncoder] : []), ...(this.#tinyVae?.models ?? [])];
  }

  get info(): PipelineInfo {
    const models = this.#models;
    return {
      ...this.#info,
      components: [...models.filter((m) => m.loaded).map((m) => m.component), "tokenizer", "scheduler"],
      asleep: !models.some((m) => m.loaded),
      previews: this.#decoder.previewPath,
      tinyVae: this.#tinyVae?.dir ?? null,
    };
  }

  async reload(): Promise<void> {
    await Promise.all(this.#models.map((m) => m.load()));
    this.#unet.requireInputs(["sample", "timestep", "encoder_hidden_states"]);
    this.#vae.requireInputs(["latent_sample"]);
    this.#xl?.check(this.#unet, this.#vae, this.#vaeConfig);
    const gpuLimits = this.deviceTensors && !this.#limits ? await readWebGpuLimits() : null;
    if (gpuLimits && this.#unet.input("sample")?.type === "float16") process.emitWarning(float16Line(gpuLimits), { type: "WebGpuFloat16" });
    this.#limits ??= describeOnnxModel({
      unetConfig: this.#unetConfig,
      schedulerConfig: this.#schedulerConfig,
      vaeScale: this.#vaeScale,
      latentChannels: this.#latentChannels,
      sample: this.#unet.input("sample"),
      encoderHiddenStates: this.#unet.input("encoder_hidden_states"),
      textTokens: this.#prompts.maxLength,
      textDim: Number(this.#unetConfig.cross_attention_dim) || 768,
      sizeMultiple: this.#info.sizeMultiple,
      weightBytes: this.#weightBytes,
      vaeConfig: this.#vaeConfig,
      vaeSample: this.#vae.input("latent_sample"),
      budgetBytes: this.#memoryBudget,
      attentionSlices: this.#unet.slicedAttention ? this.#attentionSlices : 1,
      decodeImagesPerCall: this.#decodeImagesPerCall,
      ...(gpuLimits ? { deviceLimits: { maxBufferSize: gpuLimits.maxBufferSize, maxStorageBufferBindingSize: gpuLimits.maxStorageBufferBindingSize, source: gpuLimits.source } } : {}),
    });
    // One source for the native size: what describe() found (config, else the export's static dims).
    this.#info = { ...this.#info, width: this.#limits.nativeWidth, height: this.#limits.nativeHeight };
  }

  /** How the export is laid out (component I/O, dtypes, timestep, guidance), read from the loaded sessions. */
  layout(): ModelLayout {
    const ts = this.#unet.input("timestep");
    const io = (m: OnnxModel) => ({ inputs: m.inputs, outputs: m.outputs });
    return {
      space: this.#vaeScale > 1 ? "latent" : "pixel",
      latentChannels: this.#latentChannels,
      vaeScale: this.#vaeScale,
      scalingFactor: this.#scalingFactor,
      components: { text_encoder: io(this.#textEncoder), unet: io(this.#unet), vae_decoder: io(this.#vae) },
      dtype: this.#unet.input("sample")?.type ?? "float32",
      timestep: { type: ts?.type ?? "float32", perRow: this.#perRowTimestep },
      guidance: this.#guidanceDistilled ? "embedded" : "classifier-free",
      tokenizer: { source: this.#prompts.source, maxLength: this.#prompts.maxLength },
      schedulerClass: typeof this.#schedulerConfig._class_name === "string" ? this.#schedulerConfig._class_name : null,
      ...(this.#xl ? { sdxl: this.#xl.describe(this.#schedulerConfig) } : {}),
    };
  }

  /** The export takes one timestep per row (`[batch]`); `[1]` or scalar exports take one per call. */
  get #perRowTimestep(): boolean {
    const shape = this.#unet.input("timestep")?.shape ?? [];
    return shape.length === 1 && shape[0] !== 1;
  }

  /** What this model can serve (sizes, samplers, memory per row), read once at the first load. */
  describe(): ModelLimits {
    return this.#limits!;
  }

  async release(): Promise<void> {
    await Promise.all([...this.#models.map((m) => m.release()), this.deviceTensors?.release()]);
  }

  /** Applies the model's defaults and checks the request fits the model (see resolve-request.ts). */
  resolve(r: OmniDiffusionRequest): ResolvedParams {
    const { defaults } = this.#info;
    if (this.#xl) this.#xl.checkFields(r, this.className);
    else refuseSdxlFields(r, this.className);
    if (r.vae === "tiny" && !this.#tinyVae) {
      throw new ValidationError(`vae "tiny" needs a tiny VAE, and ${this.className} has none: add an AutoencoderTiny export as ${TINY_VAE_FOLDER}/ in the model folder or start with --preview-vae DIR (docs/models.md#tiny-vae)`, {
        field: "vae",
        data: { reason: "unsupported_value", allowed: ["full"] },
      });
    }
    return this.#resolver.resolve(r, {
      defaults,
      limits: this.describe(),
      edit: { latent: this.#vaeScale > 1, encoder: this.#encoderFor(r), className: this.className, modelDir: this.modelDir },
    });
  }

  /**
   * The encoder an edit request starts from: `vae: "tiny"` takes the tiny encoder when there is one (its latents
   * land in the same UNet space as the full encoder's), else the model's own.
   */
  #encoderFor(r: OmniDiffusionRequest): OnnxModel | null {
    return (r.vae === "tiny" ? this.#decoder.tinyEncoder?.model : null) ?? this.#vaeEncoder;
  }

  validate(r: OmniDiffusionRequest): void {
    this.resolve(r);
  }

  get #guidanceDistilled(): boolean {
    return this.#unet.input("timestep_cond") !== undefined;
  }

  /** Encodes prompts (one text-encoder call for the whole set) and draws each image's initial noise. */
  async prepare(requests: OmniDiffusionRequest[], resolved?: ResolvedParams[]): Promise<DenoiseState[]> {
    const params = resolved ?? requests.map((r) => this.resolve(r));
    const useCfg = params.map((p) => p.guidanceScale > 1 && !this.#guidanceDistilled);
    const text = await (this.#xl ? this.#xl.prepare(requests, params, useCfg) : this.#prompts.conditioning(requests.map((r, i) => [r.prompt, useCfg[i] ? params[i]!.negativePrompt : null])));
    const shapes = params.map((p): [number, number, number] => [this.#latentChannels, p.height / this.#vaeScale, p.width / this.#vaeScale]);
    const inits = await Promise.all(
      requests.map((r, i) => {
        if (!r.image) return null;
        const tiny = r.vae === "tiny" ? this.#decoder.tinyEncoder : null;
        const size = shapes[i]!.reduce((a, b) => a * b);
        return tiny ? encodeInitImage(r.image, tiny.model, tiny.scalingFactor, size) : encodeInitImage(r.image, this.#vaeEncoder, this.#scalingFactor, size);
      }),
    );
    return requests.map((request, i) => {
      const p = params[i]!;
      const shape = shapes[i]!;
      const size = shape[0] * shape[1] * shape[2];
      const init = inits[i];
      let timesteps: number[] = [];
      const noise: Float32Array[] = [];
      const samples = Array.from({ length: p.numOutputs }, (_, k) => {
        const scheduler = createScheduler(p.scheduler, this.#schedulerConfig);
        scheduler.setTimesteps(p.numInferenceSteps);
        // The noise is drawn exactly as text-to-image draws it, so the same seed gives the same noise either way.
        const rng = new SeededNormal(p.seed + k);
        const eps = rng.randn(new Float32Array(size));
        noise.push(eps);
        const start = startSample(scheduler, eps, init, p.strength ?? 1, p.numInferenceSteps);
        timesteps = start.timesteps;
        const latents = start.latents;
        return { seed: p.seed + k, latents, scheduler, rng, predX0: null };
      });
      const edit: EditState | null = init
        ? { image: request.image!, mask: request.mask, init, latentMask: request.mask ? latentMask(request.mask, this.#vaeScale) : null, noise }
        : null;
      return {
        request,
        params: p,
        samples,
        ...text[i]!,
        latentShape: shape,
        timesteps,
        stepIndex: 0,
        trajectory: request.returnTrajectoryLatents ? [concatFloat32(samples.map((s) => s.latents))] : null,
        error: null,
        startedAt: performance.now(),
        denoiseMs: 0,
        edit,
      } satisfies DenoiseState;
    });
  }

  /**
   * Advances every unfinished state by one step; states with the same latent shape share UNet calls. A state
   * whose step fails (its sampler throws, its input is malformed) gets its own `error` (see `denoiseFailure`)
   * and the others advance; a failed UNet call is retried per state, so only the state that breaks it fails.
   */
  async step(states: DenoiseState[]): Promise<UnetCall[]> {
    const groups = new Map<string, DenoiseState[]>();
    for (const s of states) if (!isFinished(s)) groups.set(shapeKey(s), [...(groups.get(shapeKey(s)) ?? []), s]);
    const calls: UnetCall[] = [];
    for (const group of groups.values()) {
      let chunk: DenoiseState[] = [];
      let rows = 0;
      for (const s of group) {
        const r = rowsOf(s);
        if (chunk.length && rows + r > this.maxBatchRows) {
          calls.push(...(await this.#stepIsolated(chunk)));
          chunk = [];
          rows = 0;
        }
        chunk.push(s);
        rows += r;
      }
      if (chunk.length) calls.push(...(await this.#stepIsolated(chunk)));
    }
    return calls;
  }

  /** {@link #stepGroup}; if the shared UNet call throws, each state is retried alone and only those that still fail get the error. */
  async #stepIsolated(states: DenoiseState[]): Promise<UnetCall[]> {
    try {
      return await this.#stepGroup(states);
    } catch (err) {
      if (states.length === 1) {
        states[0]!.error = denoiseFailure(states[0]!, err);
        return [];
      }
      const calls: UnetCall[] = [];
      for (const s of states) calls.push(...(await this.#stepIsolated([s])));
      return calls;
    }
  }

  /**
   * One UNet call over `states` (split by timestep for exports with a scalar timestep). States are only
   * mutated after the call succeeded, one at a time, so a throw here leaves every state as it was.
   */
  async #stepGroup(states: DenoiseState[]): Promise<UnetCall[]> {
    const t0 = performance.now();
    const unet = this.#unet;
    // Exports with a scalar timestep cannot mix steps in one call: split by timestep then.
    const perRowTimestep = this.#perRowTimestep;
    if (!perRowTimestep) {
      const byT = new Map<number, DenoiseState[]>();
      for (const s of states) {
        const t = s.timesteps[s.stepIndex]!;
        byT.set(t, [...(byT.get(t) ?? []), s]);
      }
      if (byT.size > 1) {
        const calls: UnetCall[] = [];
        for (const g of byT.values()) calls.push(...(await this.#stepIsolated(g)));
        return calls;
      }
    }
    const dev = this.deviceTensors;
    if (dev && this.deviceSteps !== "off" && deviceEligible(unet, states)) {
      const ctx = { unet, dev, textTokens: this.#prompts.maxLength, perRowTimestep, hostSamplers: this.deviceSteps === "host-samplers" };
      return deviceStep(ctx, states);
    }
    return hostStep({ unet, dev, textTokens: this.#prompts.maxLength, perRowTimestep }, states, t0);
  }

  /** A state that leaves unfinished gives back its device buffers (webgpu). */
  discard(state: DenoiseState): void {
    releaseState(state);
  }

  /** Decodes latents (or the predicted clean sample, for previews) of the given states to RGB images (see ImageDecoder). */
  async decode(states: DenoiseState[], preview = false): Promise<GeneratedImage[][]> {
    if (this.deviceTensors) await syncToHost(this.deviceTensors, states, false, preview);
    return this.#decoder.decode(states, preview);
  }

  /** One-shot generation: the requests as one batch of a step loop (see generateOnce). */
  generate(requests: OmniDiffusionRequest[], opts: GenerateOptions = {}): Promise<DiffusionOutput> {
    return generateOnce(this, requests, opts);
  }

}
