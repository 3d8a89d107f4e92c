import { PNG } from "pngjs";
import { ValidationError } from "../errors/omni-error.js";
import { guardPng, type PngDecodeOptions } from "./png-guard.js";

export type { PngDecodeOptions } from "./png-guard.js";

/** An RGB image, 8 bits per channel, row-major, no padding. */
export interface RgbImage {
  width: number;
  height: number;
  /** length = width * height * 3 */
  data: Uint8Array;
}

/**
 * How many images this process has encoded to and decoded from PNG. Tests read it to prove an image is
 * encoded once, where its bytes leave the process, and never decoded only to be encoded again.
 */
export const pngCounters = { encodes: 0, decodes: 0 };

/** Zeroes {@link pngCounters}. */
export function resetPngCounters(): void {
  pngCounters.encodes = 0;
  pngCounters.decodes = 0;
}

/** Encodes RGB to PNG bytes (pngjs, colour type 2, so the file is as small as the pixels allow). */
export function encodePng(img: RgbImage): Buffer {
  pngCounters.encodes++;
  const png = new PNG({ width: img.width, height: img.height, colorType: 2, inputColorType: 2, inputHasAlpha: false });
  png.data = Buffer.from(img.data.buffer, img.data.byteOffset, img.data.byteLength);
  return PNG.sync.write(png, { colorType: 2, inputColorType: 2, inputHasAlpha: false });
}

/** A decoded PNG as RGBA, 8 bits per channel (pngjs's output for every colour type). */
export interface RgbaImage {
  width: number;
  height: number;
  /** length = width * height * 4 */
  rgba: Uint8Array;
}

/**
 * Decodes PNG bytes to RGBA, bounded: `guardPng` first checks the header (8-bit or packed samples, at most
 * `opts.maxPixels`) and that the pixel data inflates to no more than the header implies, so a decompression
 * bomb costs at most the size it declares. Errors are ValidationErrors naming `opts.field`. Counted in
 * {@link pngCounters}. Blocks for as long as the decode takes: servers use `decodePngRgbaAsync`
 * (png-decode-pool.ts), which runs big images on a worker thread.
 */
export function decodePngRgba(bytes: Uint8Array, opts: PngDecodeOptions = {}): RgbaImage {
  pngCounters.decodes++;
  return decodePngRgbaUncounted(bytes, opts);
}

/** {@link decodePngRgba} without the count (the decode pool counts on the caller's thread). */
export function decodePngRgbaUncounted(bytes: Uint8Array, opts: PngDecodeOptions = {}): RgbaImage {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  guardPng(buf, opts);
  let png: PNG;
  try {
    png = PNG.sync.read(buf);
  } catch (err) {
    const field = opts.field ?? "image";
    throw new ValidationError(`${field}: not a valid PNG image (${(err as Error).message})`, { field, cause: err, data: { reason: "invalid_image" } });
  }
  return { width: png.width, height: png.height, rgba: new Uint8Array(png.data.buffer, png.data.byteOffset, png.data.byteLength) };
}

/** The RGB pixels of an RGBA image (alpha dropped). */
export function rgbOf(img: RgbaImage): RgbImage {
  const rgb = new Uint8Array(img.width * img.height * 3);
  for (let i = 0, j = 0; i < img.rgba.length; i += 4, j += 3) {
    rgb[j] = img.rgba[i]!;
    rgb[j + 1] = img.rgba[i + 1]!;
    rgb[j + 2] = img.rgba[i + 2]!;
  }
  return { width: img.width, height: img.height, data: rgb };
}

/** Decodes PNG bytes (8-bit or packed, any colour type) to RGB, bounded as {@link decodePngRgba}. */
export function decodePng(bytes: Uint8Array, opts: PngDecodeOptions = {}): RgbImage {
  return rgbOf(decodePngRgba(bytes, opts));
}

/** Luminance (BT.601 weights) of the pixel whose red byte is at `i`, 0–255: how masks are read as black and white. */
export function luminance(px: Uint8Array, i: number): number {
  return 0.299 * px[i]! + 0.587 * px[i + 1]! + 0.114 * px[i + 2]!;
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** True when the bytes start with the PNG signature. */
export function hasPngSignature(bytes: Uint8Array): boolean {
  return bytes.length >= 8 && PNG_SIGNATURE.every((b, i) => bytes[i] === b);
}

/** Width and height from a PNG's IHDR chunk, without decoding it; ValidationError when the bytes are no PNG. */
export function pngSize(bytes: Uint8Array, field = "image"): { width: number; height: number } {
  const ok = bytes.length >= 24 && hasPngSignature(bytes) && String.fromCharCode(...bytes.subarray(12, 16)) === "IHDR";
  if (!ok) throw new ValidationError(`${field}: not a valid PNG image (no PNG signature and IHDR header)`, { field });
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { width: view.getUint32(16), height: view.getUint32(20) };
}

/** An RGB image that may also carry the PNG bytes of exactly its pixels (it arrived as PNG from a peer). */
export interface PngCarrier extends RgbImage {
  /** PNG of these pixels, when known: sent on as is instead of encoded again (so never write to `data` of such an image). */
  readonly png?: Uint8Array;
}

/** The image's PNG bytes: the ones it arrived with, else a fresh encode. */
export function pngOf(img: PngCarrier): Buffer {
  const { png } = img;
  return png ? Buffer.from(png.buffer, png.byteOffset, png.byteLength) : encodePng(img);
}

/**
 * An image known by its PNG bytes: `data` is decoded on first read (and kept), so an image that only
 * passes through (remote peer → this process → client) is never decoded. `width`/`height` are the
 * declared ones; a PNG of another size throws a ValidationError naming `field` on that first read.
 */
export function lazyPngImage<T extends object>(png: Uint8Array, width: number, height: number, fields: T, field = "image"): T & PngCarrier {
  // The header is read now (cheap): a payload that is no PNG, or one of another size, is refused up front.
  const size = pngSize(png, field);
  if (size.width !== width || size.height !== height) {
    throw new ValidationError(`${field}: PNG is ${size.width}x${size.height} but declared ${width}x${height}`, { field });
  }
  let data: Uint8Array | null = null;
  return Object.defineProperties(
    { ...fields, width, height, png } as T & PngCarrier,
    {
      data: {
        enumerable: true,
        get(): Uint8Array {
          if (data) return data;
          // The declared size is the cap: a payload that inflates past it is refused, not decoded.
          return (data = decodePng(png, { maxPixels: width * height, field }).data);
        },
      },
    },
  );
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

/** Decodes a PNG (any colour type) to a mask by luminance: white = repaint, black = keep. Bounded as {@link decodePngRgba}. */
export function decodeMaskPng(bytes: Uint8Array, opts: PngDecodeOptions = {}): MaskImage {
  return maskOfRgb(decodePng(bytes, { field: "mask_image", ...opts }));
}

/** A mask by luminance of RGB pixels: white = repaint, black = keep. */
export function maskOfRgb(rgb: RgbImage): MaskImage {
  const data = new Uint8Array(rgb.width * rgb.height);
  for (let i = 0; i < data.length; i++) {
    data[i] = Math.round(luminance(rgb.data, i * 3));
  }
  return { width: rgb.width, height: rgb.height, data };
}

/**
 * An image with a mask as its alpha channel, in OpenAI's edit convention: fully transparent pixels are
 * repainted. The API reads transparency as a yes/no, so mask values of 128 and above become alpha 0.
 */
export function encodeOpenAIMaskPng(image: RgbImage, mask: MaskImage): Buffer {
  const n = image.width * image.height;
  const rgba = Buffer.alloc(n * 4);
  for (let i = 0; i < n; i++) {
    rgba[i * 4] = image.data[i * 3]!;
    rgba[i * 4 + 1] = image.data[i * 3 + 1]!;
    rgba[i * 4 + 2] = image.data[i * 3 + 2]!;
    rgba[i * 4 + 3] = mask.data[i]! >= 128 ? 0 : 255;
  }
  const png = new PNG({ width: image.width, height: image.height, colorType: 6, inputColorType: 6, inputHasAlpha: true });
  png.data = rgba;
  return PNG.sync.write(png, { colorType: 6, inputColorType: 6, inputHasAlpha: true });
}
