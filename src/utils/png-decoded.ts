import type { PngDecodeOptions } from "./png-guard.js";
import { decodePngRgbaUncounted, rgbOf } from "./png.js";

/** A decoded PNG in the forms its consumers read: RGB, whether any pixel is not opaque, and then RGBA. */
export interface DecodedPng {
  width: number;
  height: number;
  /** length = width * height * 3: the pixels with alpha dropped. */
  rgb: Uint8Array;
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
