/**
 * img2img and inpainting maths that do not need a model: how strength cuts the schedule, how an RGB image
 * becomes a sample in the model's space, and the per-request edit state the step loop carries.
 */
import type { MaskImage, RgbImage } from "../utils/png.js";

/** Strength when a request has an image but none was given: diffusers' img2img default. */
export const DEFAULT_IMG2IMG_STRENGTH = 0.8;
/** Strength when a request has a mask but none was given: diffusers' inpainting default (repaint from pure noise). */
export const DEFAULT_INPAINT_STRENGTH = 1.0;

/** What an edit request carries through the denoising loop (null on text-to-image states). */
export interface EditState {
  /** The init image as given (pasted back over the unmasked pixels after decoding). */
  readonly image: RgbImage;
  /** The mask as given (255 = repaint); null for plain img2img. */
  readonly mask: MaskImage | null;
  /** The init image in the model's sample space (latents × scaling factor, or pixels in [-1, 1]). */
  readonly init: Float32Array;
  /** Repaint weight per latent cell in [0, 1] (the mask averaged over each cell); null for plain img2img. */
  readonly latentMask: Float32Array | null;
  /** Each sample's initial noise, reused to re-noise the init image at every inpainting step (as diffusers does). */
  readonly noise: Float32Array[];
}

/**
 * diffusers' `get_timesteps` for img2img: `floor(steps × strength)` steps run (at least one: a strength that
 * rounds to 0 steps is bumped to 1 instead of refused), the tail of the full schedule from index
 * `begin = steps − that`. Strength 1 keeps the whole schedule. `timesteps` is the scheduler's full list (PLMS's has
 * one more entry than steps; the tail keeps it, as diffusers does with order 1).
 */
export function strengthSchedule(timesteps: readonly number[], numInferenceSteps: number, strength: number): { timesteps: number[]; begin: number } {
  const run = Math.min(Math.max(Math.floor(numInferenceSteps * strength), 1), numInferenceSteps);
  const begin = numInferenceSteps - run;
  return { timesteps: timesteps.slice(begin), begin };
}

/** The strength a request runs with: its own, else 1.0 with a mask and 0.8 without; null without an image. */
export function effectiveStrength(r: { image: RgbImage | null; mask: MaskImage | null; strength: number | null }): number | null {
  if (!r.image) return null;
  return r.strength ?? (r.mask ? DEFAULT_INPAINT_STRENGTH : DEFAULT_IMG2IMG_STRENGTH);
}

/** RGB uint8 → CHW float in [-1, 1]: the exact inverse of `chwToRgb` before its rounding. */
export function rgbToChw(img: RgbImage): Float32Array {
  const plane = img.width * img.height;
  const out = new Float32Array(plane * 3);
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) out[c * plane + p] = (img.data[p * 3 + c]! / 255 - 0.5) * 2;
  }
  return out;
}

/**
 * The mask averaged over each `scale`×`scale` block, as repaint weights in [0, 1] on the latent grid
 * (`scale` 1 for pixel-space models: the mask itself). A block with any repainted pixel is partly repainted,
 * so the seam is denoised with its surroundings; the pixels the mask keeps are pasted back exactly at the end.
 */
export function latentMask(mask: MaskImage, scale: number): Float32Array {
  const w = mask.width / scale;
  const h = mask.height / scale;
  const out = new Float32Array(w * h);
  const norm = 1 / (255 * scale * scale);
  for (let y = 0; y < mask.height; y++) {
    for (let x = 0; x < mask.width; x++) out[Math.floor(y / scale) * w + Math.floor(x / scale)]! += mask.data[y * mask.width + x]! * norm;
  }
  return out;
}
