import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { ModelLoadError } from "../errors/omni-error.js";
import { readModelJson } from "./model-files.js";
import { OnnxModel, type SessionOptions } from "./onnx-model.js";

/** Where a model folder keeps its tiny VAE (found without any flag). */
export const TINY_VAE_FOLDER = "tiny_vae";

/**
 * A tiny VAE (diffusers' `AutoencoderTiny`, TAESD's architecture) exported in Optimum's layout:
 * `vae_decoder/model.onnx` (`latent_sample` [B, 4, h, w] → `sample` [B, 3, 8h, 8w] in [-1, 1]), optionally
 * `vae_encoder/model.onnx` (the inverse, for img2img) and `vae_decoder/config.json` (its `scaling_factor`,
 * 1.0 for AutoencoderTiny: it takes the UNet's latents as they are). About 1 M parameters per half against the
 * full VAE's 50 M, so it decodes an order of magnitude faster, with softer detail.
 */
export class TinyVae {
  readonly dir: string;
  readonly decoder: OnnxModel;
  readonly encoder: OnnxModel | null;
  /** Latents are divided by it before decoding (and encoder outputs multiplied). */
  readonly scalingFactor: number;

  constructor(dir: string, opts: SessionOptions) {
    this.dir = dir;
    const decoder = join(dir, "vae_decoder", "model.onnx");
    if (!existsSync(decoder)) {
      throw new ModelLoadError(
        `tiny VAE folder ${dir} has no vae_decoder/model.onnx; expected an AutoencoderTiny ONNX export (vae_decoder/model.onnx, optional vae_encoder/model.onnx and vae_decoder/config.json), see docs/models.md#tiny-vae`,
        { data: { dir, component: "tiny_vae" } },
      );
    }
    this.decoder = new OnnxModel("tiny_vae_decoder", decoder, opts);
    const encoder = join(dir, "vae_encoder", "model.onnx");
    this.encoder = existsSync(encoder) ? new OnnxModel("tiny_vae_encoder", encoder, opts) : null;
    const cfg = readModelJson<Record<string, unknown>>(dir, "vae_decoder/config.json", false) ?? {};
    this.scalingFactor = typeof cfg.scaling_factor === "number" && cfg.scaling_factor > 0 ? cfg.scaling_factor : 1;
  }

  /** The tiny VAE of a model: `explicit` (a flag; must exist) or the model folder's `tiny_vae/`; null when neither. */
  static locate(modelDir: string, explicit: string | undefined): string | null {
    if (explicit) {
      const dir = resolve(explicit);
      if (!existsSync(dir)) throw new ModelLoadError(`tiny VAE folder not found: ${dir}`, { data: { dir, component: "tiny_vae" } });
      return dir;
    }
    const own = join(modelDir, TINY_VAE_FOLDER);
    return existsSync(own) ? own : null;
  }

  /** The ONNX files of the tiny VAE in `dir` (the encoder only when there is one). */
  static onnxPaths(dir: string): string[] {
    return ["vae_decoder", "vae_encoder"].map((c) => join(dir, c, "model.onnx")).filter((p) => existsSync(p));
  }

  /**
   * Every ONNX file a worker of the model in `modelDir` loads that exists: text encoder, UNet, VAE decoder and
   * encoder, and the tiny VAE (`tinyVae`, else the folder's own). What its weight bytes are summed over.
   */
  static modelOnnxPaths(modelDir: string, tinyVae: string | undefined): string[] {
    const own = ["text_encoder", "text_encoder_2", "unet", "vae_decoder", "vae_encoder"].map((c) => join(modelDir, c, "model.onnx")).filter((p) => existsSync(p));
    const tinyDir = TinyVae.locate(modelDir, tinyVae);
    return [...own, ...(tinyDir ? TinyVae.onnxPaths(tinyDir) : [])];
  }

  /** Its ONNX sessions (the encoder only when the folder has one). */
  get models(): OnnxModel[] {
    return [this.decoder, ...(this.encoder ? [this.encoder] : [])];
  }
}
