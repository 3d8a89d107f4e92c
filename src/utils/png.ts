import { PNG } from "pngjs";
import { ValidationError } from "../errors/omni-error.js";

/** An RGB image, 8 bits per channel, row-major, no padding. */
export interface RgbImage {
  width: number;
  height: number;
  /** length = width * height * 3 */
  data: Uint8Array;
}

/** Encodes RGB to PNG bytes (pngjs, colour type 2, so the file is as small as the pixels allow). */
export function encodePng(img: RgbImage): Buffer {
  const png = new PNG({ width: img.width, height: img.height, colorType: 2, inputColorType: 2, inputHasAlpha: false });
  png.data = Buffer.from(img.data.buffer, img.data.byteOffset, img.data.byteLength);
  return PNG.sync.write(png, { colorType: 2, inputColorType: 2, inputHasAlpha: false });
}

/** Decodes PNG bytes (any colour type) to RGB. */
export function decodePng(bytes: Uint8Array): RgbImage {
  let png: PNG;
  try {
    png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  } catch (err) {
    throw new ValidationError(`not a valid PNG image: ${(err as Error).message}`, { field: "image", cause: err });
  }
  const rgb = new Uint8Array(png.width * png.height * 3);
  for (let i = 0, j = 0; i < png.data.length; i += 4, j += 3) {
    rgb[j] = png.data[i]!;
    rgb[j + 1] = png.data[i + 1]!;
    rgb[j + 2] = png.data[i + 2]!;
  }
  return { width: png.width, height: png.height, data: rgb };
}

/**
 * A one-channel mask, 8 bits per pixel, row-major: 255 = repaint this pixel, 0 = keep it (diffusers'
 * `mask_image` convention: white is repainted). Servers translate other conventions (OpenAI's transparent
 * = repaint) into this one at the edge.
 */
export interface MaskImage {
  width: number;
  height: number;
  /** length = width * height */
  data: Uint8Array;
}

/** Encodes a mask as a grayscale PNG (white = repaint). */
export function encodeMaskPng(mask: MaskImage): Buffer {
  const rgb = new Uint8Array(mask.width * mask.height * 3);
  for (let i = 0; i < mask.data.length; i++) rgb[i * 3] = rgb[i * 3 + 1] = rgb[i * 3 + 2] = mask.data[i]!;
  const png = new PNG({ width: mask.width, height: mask.height, colorType: 0, inputColorType: 2, inputHasAlpha: false });
  png.data = Buffer.from(rgb.buffer, rgb.byteOffset, rgb.byteLength);
  return PNG.sync.write(png, { colorType: 0, inputColorType: 2, inputHasAlpha: false });
}

/** Decodes a PNG (any colour type) to a mask by luminance: white = repaint, black = keep. */
export function decodeMaskPng(bytes: Uint8Array, field = "mask_image"): MaskImage {
  let rgb: RgbImage;
  try {
    rgb = decodePng(bytes);
  } catch (err) {
    throw new ValidationError((err as Error).message, { field, cause: err });
  }
  const data = new Uint8Array(rgb.width * rgb.height);
  for (let i = 0; i < data.length; i++) {
    data[i] = Math.round(0.299 * rgb.data[i * 3]! + 0.587 * rgb.data[i * 3 + 1]! + 0.114 * rgb.data[i * 3 + 2]!);
  }
  return { width: rgb.width, height: rgb.height, data };
}
