import type { GeneratedImage } from "../core/output.js";
import type { PreviewDecoder } from "../core/decoders.js";
import { ModelLoadError } from "../errors/omni-error.js";
import { shapeKey, type DenoiseState } from "./denoise-state.js";
import { pasteKept } from "./inpaint.js";
import { SD_LATENT_RGB_FACTORS, approximateRgb, poolLatents } from "./latent-preview.js";
import { floatData, floatTensor, type OnnxModel } from "./onnx-model.js";
import type { RgbImage } from "../utils/png.js";
import { chwToRgb } from "./tensor-ops.js";
import type { TinyVae } from "./tiny-vae.js";

/**
 * Longest side of a tiny-VAE preview, px: bigger latents are averaged down first (its cost grows with the pixels
 * decoded). At 256 px a 512² preview measured 5.1 % of an SD 1.5 UNet step (bench/realscale.ts), at the edge of
 * the 5 % a preview may cost; 192 px (168 px for 512²) is under half of that.
 */
export const PREVIEW_MAX_SIDE = 192;

/** How one decode turns latents into pixels. */
type DecodePath = "full" | "tiny" | "approx";

/** What {@link ImageDecoder} decodes with. */
export interface ImageDecoderParts {
  /** The model's own VAE decoder (for pixel-space models, its pixel decoder). */
  vae: OnnxModel;
  tiny: TinyVae | null;
  /** The full VAE's scaling factor (SD: 0.18215). */
  scalingFactor: number;
  /** Pixels per latent cell (1 for pixel-space models). */
  vaeScale: number;
  latentChannels: number;
  previewDecoder: PreviewDecoder;
  /**
   * Images per call of the full VAE: a batch is decoded in calls of at most this many (diffusers' VAE slicing), so
   * the decode's activations are one image's, not the batch's (SD 1.5 at 512²: ~0.75 GiB per image). Infinity: one call.
   */
  fullDecodeImagesPerCall: number;
  /** Latent → RGB factors of the approximate preview (default: SD 1.x/2.x's; SDXL has its own). */
  latentRgbFactors?: typeof SD_LATENT_RGB_FACTORS;
}

/**
 * Latents → RGB images: finals with the full VAE (or the tiny one for requests with `vae: "tiny"`), previews
 * with the cheapest path the model has (see PREVIEW_DECODERS in core/decoders.ts). A preview with the tiny
 * VAE is at most {@link PREVIEW_MAX_SIDE} px on its longest side; one with the approximation is the latent's
 * size (1/8 of the image's side for SD). Only a final decode is ever the full size by default.
 */
export class ImageDecoder {
  /** The path previews take, fixed at load. */
  readonly previewPath: DecodePath;
  readonly #p: ImageDecoderParts;

  constructor(parts: ImageDecoderParts, modelDir: string) {
    this.#p = parts;
    this.previewPath = resolvePreviewPath(parts, modelDir);
  }

  /** The tiny VAE's encoder, for img2img with `vae: "tiny"` (null: use the full one). */
  get tinyEncoder(): { model: OnnxModel; scalingFactor: number } | null {
    const t = this.#p.tiny;
    return t?.encoder ? { model: t.encoder, scalingFactor: t.scalingFactor } : null;
  }

  /** Decodes the latents (previews: the predicted clean sample) of each state; one decoder call per shape and path. */
  async decode(states: DenoiseState[], preview: boolean): Promise<GeneratedImage[][]> {
    const result: GeneratedImage[][] = states.map(() => []);
    const groups = new Map<string, { path: DecodePath; idx: number[] }>();
    states.forEach((s, i) => {
      const path: DecodePath = preview ? this.previewPath : s.request.vae === "tiny" ? "tiny" : "full";
      const key = `${path}|${shapeKey(s)}`;
      const g = groups.get(key) ?? { path, idx: [] };
      g.idx.push(i);
      groups.set(key, g);
    });
    for (const { path, idx } of groups.values()) {
      const items = idx.flatMap((i) => states[i]!.samples.map((smp, k) => ({ i, k, src: preview && smp.predX0 ? smp.predX0 : smp.latents, smp })));
      const images = path === "approx" ? this.#approximate(states[idx[0]!]!, items) : await this.#runSliced(path, states[idx[0]!]!, items, preview);
      items.forEach(({ i, k, smp }, j) => {
        const edit = states[i]!.edit;
        const decoded = images[j]!;
        // Inpainting keeps the unmasked pixels exactly (the latent blend is approximate); only where sizes match.
        const rgb = edit?.mask && decoded.width === edit.image.width && decoded.height === edit.image.height ? pasteKept(decoded, edit.image, edit.mask) : decoded;
        result[i]!.push({ ...rgb, requestId: states[i]!.request.requestId, index: k, seed: smp.seed });
      });
    }
    return result;
  }

  #approximate(state: DenoiseState, items: { src: Float32Array }[]) {
    const [, h, w] = state.latentShape;
    return items.map(({ src }) => approximateRgb(src, 0, w, h, this.#p.latentRgbFactors));
  }

  async #runSliced(path: "full" | "tiny", state: DenoiseState, items: { src: Float32Array }[], preview: boolean) {
    const per = path === "full" ? this.#p.fullDecodeImagesPerCall : Infinity;
    if (items.length <= per) return this.#run(path, state, items, preview);
    const images: RgbImage[] = [];
    for (let at = 0; at < items.length; at += per) images.push(...(await this.#run(path, state, items.slice(at, at + per), preview)));
    return images;
  }

  async #run(path: "full" | "tiny", state: DenoiseState, items: { src: Float32Array }[], preview: boolean) {
    const [c, h0, w0] = state.latentShape;
    const model = path === "tiny" ? this.#p.tiny!.decoder : this.#p.vae;
    const scale = path === "tiny" ? this.#p.tiny!.scalingFactor : this.#p.scalingFactor;
    // A tiny-VAE preview decodes latents averaged f×f: 1/f² of the pixels, and a preview needs no more.
    const f = preview && path === "tiny" ? Math.max(1, Math.ceil((Math.max(h0, w0) * this.#p.vaeScale) / PREVIEW_MAX_SIDE)) : 1;
    const h = Math.max(1, Math.floor(h0 / f));
    const w = Math.max(1, Math.floor(w0 / f));
    const size = c * h * w;
    const lat = new Float32Array(items.length * size);
    items.forEach(({ src }, j) => {
      const pooled = poolLatents(src, c, h0, w0, f);
      for (let q = 0; q < size; q++) lat[j * size + q] = pooled[q]! / scale;
    });
    const input = model.input("latent_sample") ?? model.inputs[0]!;
    const out = await model.run({ [input.name]: floatTensor(input.type, lat, [items.length, c, h, w]) });
    const img = out[model.outputs[0]!.name] ?? Object.values(out)[0]!;
    const [, , H, W] = img.dims as number[];
    const data = floatData(img);
    return items.map((_, j) => chwToRgb(data, j * 3 * H! * W!, W!, H!));
  }
}

/** `auto` → tiny VAE, else the approximation (4-channel latents), else the model's own decoder; explicit choices are checked. */
function resolvePreviewPath(p: ImageDecoderParts, modelDir: string): DecodePath {
  const approxFits = p.vaeScale > 1 && p.latentChannels === SD_LATENT_RGB_FACTORS.length;
  switch (p.previewDecoder) {
    case "tiny":
      if (!p.tiny) throw new ModelLoadError(`previewDecoder "tiny" needs a tiny VAE: ${modelDir} has no tiny_vae/ folder and none was given (--preview-vae DIR)`, { data: { modelDir, component: "tiny_vae" } });
      return "tiny";
    case "approx":
      if (!approxFits) throw new ModelLoadError(`previewDecoder "approx" needs a 4-channel latent model; ${modelDir} ${p.vaeScale > 1 ? `has ${p.latentChannels} latent channels` : "works in pixel space"}`, { data: { modelDir } });
      return "approx";
    case "full":
      return "full";
    case "auto":
      if (p.tiny) return "tiny";
      if (approxFits) return "approx";
      // Pixel-space models decode with a cheap pixel decoder; other latent formats have no approximation yet.
      if (p.vaeScale > 1) process.emitWarning(`${modelDir}: no tiny VAE and no latent approximation for ${p.latentChannels}-channel latents; previews use the full VAE (a full decode each)`);
      return "full";
  }
}
