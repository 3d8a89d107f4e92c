import { maxSizeFor, tightenLimits, type RequestLimits } from "../../core/limits.js";
import type { ModelLimits } from "../../core/model-limits.js";
import { OmniError, ValidationError } from "../../errors/omni-error.js";
import { effectiveStrength, strengthSchedule } from "../../pipelines/init-image.js";
import { decodePngAsync } from "../../utils/png-decode-pool.js";
import { DEFAULT_MAX_PNG_PIXELS } from "../../utils/png-header.js";
import { hasPngSignature, luminance, type MaskImage, type RgbImage, type RgbaImage } from "../../utils/png.js";

/** A decoded upload: RGBA pixels and whether any pixel is not fully opaque. */
export interface RgbaUpload extends RgbaImage {
  /** True when some pixel has alpha < 255 (the image carries a transparency mask). */
  transparent: boolean;
}

/**
 * An upload as {@link decodeUpload} returns it: its RGB pixels (made on the decode thread), and its RGBA only
 * when some pixel is transparent (an opaque upload's alpha says nothing, and a 2048² one is 16 MiB).
 */
export interface DecodedUpload {
  width: number;
  height: number;
  /** The pixels with alpha dropped: at the upload's size, or at `fit`'s when {@link decodeUpload} was given one. */
  rgb: RgbImage;
  transparent: boolean;
  /** RGBA when `transparent`, else null. */
  rgba: Uint8Array | null;
}

/** What the mask readers take: a decoded upload, or RGBA with its transparency flag (the CLI's --mask). */
export type MaskSource = RgbaUpload | DecodedUpload;

/**
 * An upload may be up to this many times the largest size the model serves, per side: a client may send a
 * bigger picture to be resized down, but not one the model could never use.
 */
export const UPLOAD_SIDE_FACTOR = 2;

/** The most pixels an uploaded image may have, and where that number comes from (said in the error). */
export interface UploadCap {
  maxPixels: number;
  /** Follows "more than the N" in the error. */
  capNote: string;
}

/**
 * The upload pixel cap of a server (serve, the worker's HTTP, gRPC and SageMaker ports, the queue worker):
 * {@link UPLOAD_SIDE_FACTOR} times the largest size `limits` and `model` allow (core/limits.ts `maxSizeFor`),
 * per side, at most {@link DEFAULT_MAX_PNG_PIXELS}. Checked on the PNG header before anything is inflated.
 */
export function uploadCapOf(limits: RequestLimits, model: ModelLimits | null | undefined): UploadCap {
  const max = maxSizeFor(limits, model);
  const [w, h] = [max.width * UPLOAD_SIDE_FACTOR, max.height * UPLOAD_SIDE_FACTOR];
  if (w * h >= DEFAULT_MAX_PNG_PIXELS) return { maxPixels: DEFAULT_MAX_PNG_PIXELS, capNote: "pixels an upload may have" };
  return { maxPixels: w * h, capNote: `pixels an upload may have here (${w}x${h}: ${UPLOAD_SIDE_FACTOR}x the largest size served, ${max.width}x${max.height}, per side)` };
}

/**
 * {@link uploadCapOf} for `serve`: its own `maxWidth`/`maxHeight` over the engine's limits, as its request
 * checks use them.
 */
export function serverUploadCap(server: { maxWidth?: number; maxHeight?: number }, model: { requestLimits: RequestLimits; limits: ModelLimits | null }): UploadCap {
  return uploadCapOf(tightenLimits(model.requestLimits, { maxWidth: server.maxWidth, maxHeight: server.maxHeight }), model.limits);
}

function invalidImage(field: string, message: string, cause?: unknown): ValidationError {
  return new ValidationError(`${field}: ${message}`, { field, cause, data: { reason: "invalid_image" } });
}

/**
 * Decodes an uploaded image (PNG, 8 bits per channel or fewer, any colour type) off the event loop, bounded by
 * `cap` and by what its header implies (utils/png-guard.ts: a decompression bomb is refused having cost at
 * most its declared size). Other formats are refused naming the field: the server decodes PNG only, so a
 * JPEG or WebP upload is a 400 that says so, never a garbled image. `bytes` are taken: a big upload's buffer
 * moves to the decode thread (`transfer`), so the caller must not read them afterwards. With `fit` (the size
 * the request will run at, when known before decoding) the RGB is resized on the decode thread and only that
 * comes back: a 2048² upload for a 32² edit is 3 KiB on the event loop's heap, not 12 MiB.
 */
export async function decodeUpload(bytes: Uint8Array, field: string, cap: UploadCap, signal?: AbortSignal, fit?: { width: number; height: number }): Promise<DecodedUpload> {
  if (!hasPngSignature(bytes)) {
    throw invalidImage(field, "not a PNG image (this server accepts PNG uploads only)");
  }
  const png = await decodePngAsync(bytes, { field, maxPixels: cap.maxPixels, capNote: cap.capNote, signal, transfer: true, fit });
  const rgb = { width: png.rgbSize?.width ?? png.width, height: png.rgbSize?.height ?? png.height, data: png.rgb };
  return { width: png.width, height: png.height, rgb, transparent: png.transparent, rgba: png.rgba };
}

/** 255 where `pick(alpha, luminance)` of a pixel is true, else 0: our mask convention (255 = repaint). */
function maskWhere(img: MaskSource, pick: (alpha: number, luma: number) => boolean): MaskImage {
  const data = new Uint8Array(img.width * img.height);
  const rgba = img.rgba;
  // An upload decoded to `fit` another size has no full-size RGB to read a mask from.
  const rgb = "rgb" in img && img.rgb.width === img.width && img.rgb.height === img.height ? img.rgb.data : null;
  if (!rgb && !rgba) throw new OmniError("a mask needs the upload's own pixels: decode it without fit", "OMNI_ERR_INTERNAL");
  for (let p = 0; p < data.length; p++) {
    const alpha = rgba ? rgba[p * 4 + 3]! : 255;
    const luma = rgb ? luminance(rgb, p * 3) : luminance(rgba!, p * 4);
    data[p] = pick(alpha, luma) ? 255 : 0;
  }
  return { width: img.width, height: img.height, data };
}

/**
 * OpenAI's mask convention: the fully transparent pixels (alpha 0) are repainted. A mask without any
 * transparency cannot mean that (it would repaint nothing), so it is read as a black-and-white mask
 * instead: white (luminance ≥ 128) is repainted, as in diffusers and A1111.
 */
export function openAIMask(img: MaskSource): MaskImage {
  if (img.transparent) return maskWhere(img, (alpha) => alpha === 0);
  return maskWhere(img, (_, luma) => luma >= 128);
}

/**
 * AUTOMATIC1111's mask convention (`create_binary_mask`): a mask with transparency is read by its alpha
 * channel, one without by its luminance; either way values above 128 are repainted. `invert`
 * (`inpainting_mask_invert: 1`) repaints the other side.
 */
export function a1111Mask(img: MaskSource, invert: boolean): MaskImage {
  const on = img.transparent ? (alpha: number) => alpha > 128 : (_: number, luma: number) => luma > 128;
  return maskWhere(img, (alpha, luma) => on(alpha, luma) !== invert);
}

/**
 * Decodes a base64 image as A1111 clients send it: plain base64, or a data URL (`data:image/png;base64,...`).
 * `fit` as for {@link decodeUpload}.
 */
export async function decodeBase64Upload(value: string, field: string, cap: UploadCap, signal?: AbortSignal, fit?: { width: number; height: number }): Promise<DecodedUpload> {
  const comma = value.startsWith("data:") ? value.indexOf(",") : -1;
  const b64 = (comma >= 0 ? value.slice(comma + 1) : value).trim();
  if (b64 === "" || !/^[A-Za-z0-9+/=_\-\s]+$/.test(b64)) throw invalidImage(field, "not base64 image data");
  return decodeUpload(Buffer.from(b64, "base64"), field, cap, signal, fit);
}

export { resizeRgb } from "../../utils/image-resize.js";

/** Resizes a mask by nearest neighbour, so it stays binary. */
export function resizeMask(mask: MaskImage, width: number, height: number): MaskImage {
  if (mask.width === width && mask.height === height) return mask;
  const out = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    const sy = Math.min(mask.height - 1, Math.floor(((y + 0.5) * mask.height) / height));
    for (let x = 0; x < width; x++) out[y * width + x] = mask.data[sy * mask.width + Math.min(mask.width - 1, Math.floor(((x + 0.5) * mask.width) / width))]!;
  }
  return { width, height, data: out };
}

/**
 * Denoising steps an edit actually runs (the pipeline's rule: `floor(steps × strength)`, at least one, with
 * its default strength when none is given), so partial images and live previews are spread over those
 * steps rather than over the ones skipped. `steps` unchanged for a request without an image.
 */
export function stepsRun(steps: number | null, edit: { image: RgbImage | null; mask: MaskImage | null; strength: number | null }): number | null {
  const strength = effectiveStrength(edit);
  if (steps === null || strength === null) return steps;
  return strengthSchedule(Array.from({ length: steps }, (_, i) => i), steps, strength).timesteps.length;
}
