import type { PngDecodeOptions } from "./png-guard.js";
import { resizeRgb } from "./image-resize.js";
import { decodePngRgbaUncounted, rgbOf } from "./png.js";

/** A decoded PNG in the forms its consumers read: RGB, whether any pixel is not opaque, and then RGBA. */
export interface DecodedPng {
  width: number;
  height: number;
  /** The pixels with alpha dropped: length = width * height * 3, or that of `rgbSize` when they were resized. */
  rgb: Uint8Array;
  /** The size `rgb` was resized to (a decode asked to `fit` one); absent when it is the image's own. */
  rgbSize?: { width: number; height: number };
  /** True when some pixel has alpha < 255 (the image carries a transparency mask). */
  transparent: boolean;
  /** RGBA (length = width * height * 4) when `transparent`; null for an opaque image, whose alpha says nothing. */
  rgba: Uint8Array | null;
}

/**
 * Decodes (bounded, see `decodePngRgba`) and derives every per-pixel form at once: run on a decode-pool
 * thread for big images, so the server's event loop never walks their pixels. Not counted in `pngCounters`.
 */
export function decodedPng(bytes: Uint8Array, opts: PngDecodeOptions): DecodedPng {
  const img = decodePngRgbaUncounted(bytes, opts);
  let transparent = false;
  for (let i = 3; i < img.rgba.length; i += 4) {
    if (img.rgba[i]! < 255) {
      transparent = true;
      break;
    }
  }
  return { width: img.width, height: img.height, rgb: rgbOf(img).data, transparent, rgba: transparent ? img.rgba : null };
}

/**
 * `img` with its RGB resized (image-resize.ts, bilinear) to `fit`, when one is given and differs from its size:
 * done where it was decoded, so a big upload's full-size pixels never reach the thread that asked for a small one.
 */
export function fitted(img: DecodedPng, fit: { width: number; height: number } | undefined): DecodedPng {
  if (!fit || (fit.width === img.width && fit.height === img.height)) return img;
  const rgb = resizeRgb({ width: img.width, height: img.height, data: img.rgb }, fit.width, fit.height).data;
  return { ...img, rgb, rgbSize: { width: fit.width, height: fit.height } };
}
