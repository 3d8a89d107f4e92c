import type { RgbImage } from "../utils/png.js";

/**
 * Latent → RGB factors of Stable Diffusion 1.x/2.x's VAE (both share it): RGB ≈ Σ latent[c] × factor[c] for
 * the UNet-space latents (before the 1 / 0.18215 scaling), in [-1, 1]. The values are ComfyUI's
 * `latent_formats.SD15.latent_rgb_factors` (comfy/latent_formats.py), the successor of AUTOMATIC1111's
 * "Approx cheap" preview (`sd_vae_approx.cheap_approximation`): a least-squares fit of the VAE's decoded colour to
 * the latent channels. Rows: latent channels 0–3; columns: R, G, B.
 */
export const SD_LATENT_RGB_FACTORS: readonly (readonly [number, number, number])[] = [
  [0.3512, 0.2297, 0.3227],
  [0.325, 0.4974, 0.235],
  [-0.2829, 0.1762, 0.2721],
  [-0.212, -0.2616, -0.7177],
];

/**
 * The same fit for SDXL's VAE (its own latent space; scaling 0.13025): ComfyUI's `latent_formats.SDXL.latent_rgb_factors`.
 */
export const SDXL_LATENT_RGB_FACTORS: readonly (readonly [number, number, number])[] = [
  [0.392, 0.4054, 0.4549],
  [-0.2634, -0.0196, 0.0653],
  [0.0568, 0.1687, -0.0755],
  [-0.3112, -0.2359, -0.2076],
];

/**
 * The linear preview: one RGB pixel per latent cell (so the image is the latent's size, 1/8 of the final
 * image's side for SD), no network. `latents` holds one sample [C, h, w] (UNet space) from `offset`; C must
 * match the factors' rows.
 */
export function approximateRgb(latents: Float32Array, offset: number, width: number, height: number, factors = SD_LATENT_RGB_FACTORS): RgbImage {
  const plane = width * height;
  const data = new Uint8Array(plane * 3);
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) {
      let v = 0;
      for (let l = 0; l < factors.length; l++) v += latents[offset + l * plane + p]! * factors[l]![c]!;
      const byte = (v / 2 + 0.5) * 255;
      data[p * 3 + c] = byte <= 0 ? 0 : byte >= 255 ? 255 : Math.round(byte);
    }
  }
  return { width, height, data };
}

/**
 * Averages [C, h, w] latents over f×f cells (a ragged edge of fewer than f cells is dropped): a tiny VAE then
 * decodes a preview 1/f the final image's side, at 1/f² the cost. Returns the input itself for f = 1.
 */
export function poolLatents(latents: Float32Array, channels: number, height: number, width: number, f: number): Float32Array {
  if (f === 1) return latents;
  const h = Math.floor(height / f);
  const w = Math.floor(width / f);
  const out = new Float32Array(channels * h * w);
  const norm = 1 / (f * f);
  for (let c = 0; c < channels; c++) {
    for (let y = 0; y < h * f; y++) {
      for (let x = 0; x < w * f; x++) out[c * h * w + Math.floor(y / f) * w + Math.floor(x / f)]! += latents[c * height * width + y * width + x]! * norm;
    }
  }
  return out;
}
