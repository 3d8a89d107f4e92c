import { WIRE_NAMES, type OmniDiffusionRequest } from "../../core/request.js";
import { ModelLoadError, ValidationError } from "../../errors/omni-error.js";
import type { AddedConditioning, ResolvedParams } from "../denoise-state.js";
import type { ModelIndex } from "../model-files.js";
import type { OnnxModel, SessionOptions } from "../onnx-model.js";
import { SdxlTextEncoders } from "./sdxl-text-encoders.js";
import { sdxlDefaults } from "./sdxl-defaults.js";
import type { SdxlLayout } from "../model-layout.js";
import type { SchedulerConfig } from "../../schedulers/types.js";

/** diffusers' StableDiffusionXLImg2ImgPipeline defaults for the refiner's aesthetic conditioning. */
export const DEFAULT_AESTHETIC_SCORE = 6.0;
export const DEFAULT_NEGATIVE_AESTHETIC_SCORE = 2.5;

/** Request fields only SDXL exports read: any other model refuses them by name rather than ignore them. */
const SDXL_FIELDS = ["prompt2", "negativePrompt2", "originalSize", "cropsCoordsTopLeft", "targetSize", "aestheticScore", "negativeAestheticScore", "denoisingEnd"] as const;
/** What each kind of SDXL model does not read (the ensemble strips `denoising_end` before its experts see it). */
const UNREAD: Record<"base" | "refiner", readonly (typeof SDXL_FIELDS)[number][]> = {
  base: ["aestheticScore", "negativeAestheticScore", "denoisingEnd"],
  // The refiner's one encoder takes `prompt` (diffusers pairs prompts and tokenizers with zip).
  refiner: ["prompt2", "negativePrompt2", "targetSize", "denoisingEnd"],
};

/** Throws a ValidationError naming the first SDXL-only field a request to a non-SDXL model sets. */
export function refuseSdxlFields(r: OmniDiffusionRequest, className: string): void {
  for (const f of SDXL_FIELDS) {
    if (r[f] !== null && r[f] !== undefined) {
      const what = f === "denoisingEnd" ? "SDXL base + refiner ensembles (docs/models.md#sdxl)" : "SDXL models (text_encoder_2 + size conditioning)";
      throw new ValidationError(`${WIRE_NAMES[f]} applies only to ${what}; ${className} is not one`, { field: WIRE_NAMES[f] });
    }
  }
}

/**
 * SDXL's VAE overflows in float16, so diffusers decodes in float32 when its config says `force_upcast`. An ONNX
 * export's dtype is fixed: a float16 `vae_decoder` with `force_upcast` is refused at load rather than decoding
 * garbage; re-export the VAE in float32, or use a VAE fixed for float16 (madebyollin/sdxl-vae-fp16-fix) with
 * `force_upcast: false` in vae_decoder/config.json.
 */
export function checkVaeUpcast(vae: OnnxModel, vaeConfig: Record<string, unknown>): void {
  if (vaeConfig.force_upcast === false || vae.input("latent_sample")?.type !== "float16") return;
  throw new ModelLoadError(
    `vae_decoder (${vae.path}) is a float16 export, but its config asks for force_upcast: SDXL's VAE overflows in float16 and diffusers decodes it in float32, which a float16 ONNX graph cannot; export vae_decoder in float32 (optimum-cli export onnx without --dtype fp16 for it), or use a float16-safe VAE (madebyollin/sdxl-vae-fp16-fix) and set "force_upcast": false in vae_decoder/config.json`,
    { data: { component: "vae_decoder", reason: "force_upcast" } },
  );
}

/** A request's text conditioning: context rows and the UNet's added inputs. */
export interface SdxlConditioning {
  cond: Float32Array;
  uncond: Float32Array | null;
  added: AddedConditioning;
}

/**
 * SDXL's conditioning (diffusers' `StableDiffusionXLPipeline.encode_prompt` and `_get_add_time_ids`): the
 * concatenated penultimate hidden states as `encoder_hidden_states`, `text_encoder_2`'s pooled projection as
 * `text_embeds`, and `time_ids`: original size, crop top-left and target size (6 values, the base and Turbo), or
 * original size, crop and an aesthetic score (5 values, the refiner). The unconditional rows get zero embeddings
 * when the request has no negative prompt and the model says `force_zeros_for_empty_prompt`.
 */
export class SdxlConditioner {
  readonly encoders: SdxlTextEncoders;
  readonly #forceZeros: boolean;
  #timeIds = 6;

  /** True when the folder is an SDXL export (it has `text_encoder_2`). */
  static detect(modelDir: string): boolean {
    return SdxlTextEncoders.detect(modelDir);
  }

  constructor(modelDir: string, index: ModelIndex, opts: SessionOptions) {
    this.encoders = new SdxlTextEncoders(modelDir, opts);
    // diffusers' defaults: True for the base pipeline, False for the img2img (refiner) pipeline.
    const fz = index.force_zeros_for_empty_prompt;
    this.#forceZeros = typeof fz === "boolean" ? fz : this.encoders.dual;
  }

  /** The tokenizer folder of the first encoder (the refiner has only `tokenizer_2`). */
  get tokenizerFolder(): string {
    return this.encoders.dual ? "tokenizer" : "tokenizer_2";
  }

  /** `time_ids` values per row (6, or 5 for the refiner's aesthetic conditioning). */
  get timeIdsWidth(): number {
    return this.#timeIds;
  }

  /** What `info` prints of the conditioning. */
  describe(scheduler: SchedulerConfig): SdxlLayout {
    const kind = this.#timeIds === 5 ? "refiner" : sdxlDefaults(scheduler).turbo ? "turbo" : "base";
    const textEncoders = this.encoders.describe();
    const contextDim = textEncoders.reduce((a, e) => a + Number(e.outputs.find((o) => o.name === e.hiddenState)?.shape[2] ?? 0), 0);
    return { kind, textEncoders, contextDim, timeIds: this.#timeIds, forceZerosForEmptyPrompt: this.#forceZeros };
  }

  /** Refuses the SDXL fields this kind of model (base / Turbo, or refiner) would not read, naming the field. */
  checkFields(r: OmniDiffusionRequest, className: string): void {
    const kind = this.#timeIds === 6 ? "base" : "refiner";
    for (const f of UNREAD[kind]) {
      if (r[f] !== null && r[f] !== undefined) {
        const what = f === "denoisingEnd" ? "an SDXL base + refiner ensemble (docs/models.md#sdxl)" : kind === "base" ? "the SDXL refiner (time_ids with an aesthetic score)" : "SDXL base models";
        throw new ValidationError(`${WIRE_NAMES[f]} applies only to ${what}; ${className} is an SDXL ${kind}`, { field: WIRE_NAMES[f] });
      }
    }
  }

  /** Checks the loaded sessions: the encoders' outputs, the UNet's added inputs, a VAE that can decode in float32. */
  check(unet: OnnxModel, vae: OnnxModel, vaeConfig: Record<string, unknown>): void {
    this.encoders.checkOutputs();
    checkVaeUpcast(vae, vaeConfig);
    unet.requireInputs(["text_embeds", "time_ids"]);
    const width = unet.input("time_ids")!.shape[1];
    this.#timeIds = typeof width === "number" ? width : this.encoders.dual ? 6 : 5;
    if (this.#timeIds !== 6 && this.#timeIds !== 5) {
      throw new ModelLoadError(`unet time_ids is [batch, ${this.#timeIds}]; SDXL exports take 6 (sizes) or 5 (the refiner's sizes + aesthetic score)`, {
        data: { component: "unet", input: "time_ids" },
      });
    }
  }

  /** The conditioning of each request, its prompts encoded in one call per encoder. */
  async prepare(requests: OmniDiffusionRequest[], params: ResolvedParams[], useCfg: boolean[]): Promise<SdxlConditioning[]> {
    const pairs: [string, string][] = [];
    const key = (p: [string, string]) => {
      const i = pairs.findIndex((q) => q[0] === p[0] && q[1] === p[1]);
      return i >= 0 ? i : pairs.push(p) - 1;
    };
    const wanted = requests.map((r, i) => {
      const pos = key([r.prompt, r.prompt2 ?? r.prompt]);
      const zeros = useCfg[i]! && r.negativePrompt === null && this.#forceZeros;
      const neg = useCfg[i] && !zeros ? key([params[i]!.negativePrompt, r.negativePrompt2 ?? params[i]!.negativePrompt]) : -1;
      return { pos, neg, zeros };
    });
    const emb = await this.encoders.encode(pairs);
    const per = emb.tokens * emb.dim;
    const hidden = (k: number) => emb.hidden.subarray(k * per, (k + 1) * per);
    const pooled = (k: number) => emb.pooled.subarray(k * emb.pooledDim, (k + 1) * emb.pooledDim);
    return requests.map((r, i) => {
      const { pos, neg, zeros } = wanted[i]!;
      const p = params[i]!;
      const cond = { text_embeds: pooled(pos), time_ids: this.#ids(r, p, false) };
      if (!useCfg[i]) return { cond: hidden(pos), uncond: null, added: { cond, uncond: null } };
      const uncond = { text_embeds: zeros ? new Float32Array(emb.pooledDim) : pooled(neg), time_ids: this.#ids(r, p, true) };
      return { cond: hidden(pos), uncond: zeros ? new Float32Array(per) : hidden(neg), added: { cond, uncond } };
    });
  }

  /** `add_time_ids`: the negative rows share the sizes (diffusers' default) and take the negative aesthetic score. */
  #ids(r: OmniDiffusionRequest, p: ResolvedParams, negative: boolean): Float32Array {
    const size: [number, number] = [p.height, p.width];
    const head = [...(r.originalSize ?? size), ...(r.cropsCoordsTopLeft ?? [0, 0])];
    if (this.#timeIds === 6) return Float32Array.from([...head, ...(r.targetSize ?? size)]);
    const score = negative ? (r.negativeAestheticScore ?? DEFAULT_NEGATIVE_AESTHETIC_SCORE) : (r.aestheticScore ?? DEFAULT_AESTHETIC_SCORE);
    return Float32Array.from([...head, score]);
  }
}
