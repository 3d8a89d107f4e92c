/**
 * img2img and inpainting maths that do not need a model: how strength cuts the schedule, how an RGB image
 * becomes a sample in the model's space, and the per-request edit state the step loop carries.
 */
import type { OmniDiffusionRequest } from "../core/request.js";
import { ValidationError } from "../errors/omni-error.js";
import type { Scheduler } from "../schedulers/types.js";
import type { MaskImage, RgbImage } from "../utils/png.js";
import { floatData, floatTensor, type OnnxModel } from "./onnx-model.js";

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

/**
 * The size a request runs at: its width/height, else its image's (an edit's size is its image's; when both are
 * given they must agree, since images are never resized), else the model's native size. `fieldOf` names the
 * field a size error should blame: `image` for a side taken from the image.
 */
export function requestSize(
  r: Pick<OmniDiffusionRequest, "width" | "height" | "image">,
  nativeWidth: number,
  nativeHeight: number,
): { width: number; height: number; fieldOf: (dim: "width" | "height") => "width" | "height" | "image" } {
  const image = r.image;
  if (image && ((r.width !== null && r.width !== image.width) || (r.height !== null && r.height !== image.height))) {
    throw new ValidationError(`image is ${image.width}x${image.height} but the request asks for ${r.width ?? image.width}x${r.height ?? image.height}; send an image of the requested size or leave width/height out`, {
      field: "image",
      data: { reason: "size_mismatch" },
    });
  }
  return {
    width: r.width ?? image?.width ?? nativeWidth,
    height: r.height ?? image?.height ?? nativeHeight,
    fieldOf: (dim) => (image && r[dim] === null ? "image" : dim),
  };
}

/** What a model needs to start from an image: the sampler's forward process, and a VAE encoder on latent models. */
export function checkCanEdit(scheduler: Scheduler, model: { latent: boolean; encoder: OnnxModel | null; className: string; modelDir: string }): void {
  if (typeof scheduler.addNoise !== "function") {
    throw new ValidationError(`scheduler "${scheduler.name}" has no addNoise, so it cannot start from an image (img2img / inpainting)`, { field: "scheduler", data: { reason: "unsupported_value" } });
  }
  if (model.latent && !model.encoder) {
    throw new ValidationError(`${model.className} at ${model.modelDir} has no vae_encoder (vae_encoder/model.onnx), which img2img and inpainting need to encode the image; this model serves text-to-image only`, {
      field: "image",
      data: { reason: "unsupported_value", missingComponent: "vae_encoder" },
    });
  }
}

/**
 * The init image in the model's sample space (`size` values). Pixel-space models (no encoder; VAE factor 1, like
 * tiny-shapes, whose decoder is the identity) take the image in [-1, 1] times the scaling factor, the exact inverse
 * of decoding; latent models run the VAE encoder (the mean half when it returns mean and log-variance, diffusers'
 * `latent_parameters`) times the scaling factor.
 */
export async function encodeInitImage(image: RgbImage, encoder: OnnxModel | null, scalingFactor: number, size: number): Promise<Float32Array> {
  let init = rgbToChw(image);
  if (encoder) {
    const input = encoder.inputs[0]!;
    const out = await encoder.run({ [input.name]: floatTensor(input.type, init, [1, 3, image.height, image.width]) });
    init = floatData(out[encoder.outputs[0]!.name] ?? Object.values(out)[0]!).slice(0, size);
  }
  return scalingFactor === 1 ? init : init.map((v) => v * scalingFactor);
}

/**
 * One sample's schedule and start, on a scheduler after `setTimesteps`. Text-to-image (`init` null) and strength 1
 * start from the noise times `initNoiseSigma` (pure noise like text-to-image, as diffusers' inpainting does at
 * strength 1, so the two are byte-identical); below 1 the init image is noised to the first timestep that runs,
 * and the scheduler is told where the run begins (repeated rounded timesteps make a lookup ambiguous).
 */
export function startSample(scheduler: Scheduler, noise: Float32Array, init: Float32Array | null, strength: number, numInferenceSteps: number): { latents: Float32Array; timesteps: number[] } {
  if (!init) return { latents: noise.map((v) => v * scheduler.initNoiseSigma), timesteps: scheduler.timesteps };
  const { timesteps, begin } = strengthSchedule(scheduler.timesteps, numInferenceSteps, strength);
  if (begin > 0) scheduler.setBeginIndex?.(begin);
  const latents = strength < 1 ? scheduler.addNoise!(init, noise, timesteps[0]!) : noise.map((v) => v * scheduler.initNoiseSigma);
  return { latents, timesteps };
}
