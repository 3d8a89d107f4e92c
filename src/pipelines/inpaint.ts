/**
 * Inpainting by latent blending (the method that works with any text-to-image UNet): after every step the
 * kept region is overwritten with the init image noised to the next timestep, and after decoding the kept
 * pixels are pasted back exactly.
 */
import type { Scheduler } from "../schedulers/types.js";
import type { MaskImage, RgbImage } from "../utils/png.js";
import type { EditState } from "./init-image.js";

/**
 * The sample after a step, with the kept region replaced: `(1 − m) · known + m · latents`, where `known` is
 * the init image noised to `nextT` with the sample's own initial noise (diffusers' inpainting loop), or the
 * clean init after the last step (`nextT` undefined). `m` is per latent cell, shared by all channels.
 */
export function blendKnownRegion(latents: Float32Array, edit: EditState, sample: number, scheduler: Scheduler, nextT: number | undefined): Float32Array {
  const m = edit.latentMask!;
  const known = nextT === undefined ? edit.init : scheduler.addNoise!(edit.init, edit.noise[sample]!, nextT);
  const plane = m.length;
  const out = new Float32Array(latents.length);
  for (let i = 0; i < out.length; i++) {
    const w = m[i % plane]!;
    out[i] = w === 0 ? known[i]! : w === 1 ? latents[i]! : (1 - w) * known[i]! + w * latents[i]!;
  }
  return out;
}

/**
 * The decoded image with the kept pixels of `init` put back: mask 0 keeps the init pixel exactly, 255 takes
 * the generated one, values between blend (rounded), so soft mask edges fade.
 */
export function pasteKept(generated: RgbImage, init: RgbImage, mask: MaskImage): RgbImage {
  const data = new Uint8Array(generated.data.length);
  for (let p = 0; p < mask.data.length; p++) {
    const m = mask.data[p]!;
    for (let c = 0; c < 3; c++) {
      const i = p * 3 + c;
      data[i] = m === 0 ? init.data[i]! : m === 255 ? generated.data[i]! : Math.round((init.data[i]! * (255 - m) + generated.data[i]! * m) / 255);
    }
  }
  return { width: generated.width, height: generated.height, data };
}
