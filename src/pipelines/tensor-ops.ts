import type { RgbImage } from "../utils/png.js";

/** Classifier-free guidance: uncond + g * (cond - uncond), then optional guidance_rescale (Lin et al. 2023, §3.4). */
export function applyGuidance(uncond: Float32Array, cond: Float32Array, scale: number, rescale: number): Float32Array {
  const out = new Float32Array(cond.length);
  for (let i = 0; i < out.length; i++) out[i] = uncond[i]! + scale * (cond[i]! - uncond[i]!);
  if (rescale > 0) {
    const ratio = std(cond) / Math.max(std(out), 1e-12);
    for (let i = 0; i < out.length; i++) out[i] = rescale * out[i]! * ratio + (1 - rescale) * out[i]!;
  }
  return out;
}

function std(x: Float32Array): number {
  let mean = 0;
  for (let i = 0; i < x.length; i++) mean += x[i]!;
  mean /= x.length;
  let v = 0;
  for (let i = 0; i < x.length; i++) v += (x[i]! - mean) ** 2;
  return Math.sqrt(v / Math.max(1, x.length - 1));
}

/** diffusers' get_guidance_scale_embedding for guidance-distilled UNets (LCM's `timestep_cond`). */
export function guidanceScaleEmbedding(w: number, dim: number): Float32Array {
  const half = Math.floor(dim / 2);
  const out = new Float32Array(dim);
  const k = Math.log(10000) / (half - 1);
  const ws = w * 1000;
  for (let i = 0; i < half; i++) {
    const a = ws * Math.exp(-k * i);
    out[i] = Math.sin(a);
    out[half + i] = Math.cos(a);
  }
  return out;
}

/** A decoded CHW image in [-1, 1] → RGB uint8 (rounded, clamped). */
export function chwToRgb(data: Float32Array, offset: number, width: number, height: number): RgbImage {
  const plane = width * height;
  const rgb = new Uint8Array(plane * 3);
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) {
      const v = (data[offset + c * plane + p]! / 2 + 0.5) * 255;
      rgb[p * 3 + c] = v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v);
    }
  }
  return { width, height, data: rgb };
}
