import { LimitExceededError, ValidationError } from "../errors/omni-error.js";

/** What a PNG's IHDR chunk says, read without inflating anything. */
export interface PngHeader {
  width: number;
  height: number;
  /** Bits per sample (1, 2, 4, 8 or 16). */
  bitDepth: number;
  /** 0 grey, 2 RGB, 3 palette, 4 grey + alpha, 6 RGBA. */
  colourType: number;
  /** Adam7 interlacing (seven passes, each with its own filter bytes). */
  interlaced: boolean;
}

/**
 * Most pixels any PNG decode in this process accepts (4096², 64 MiB as RGBA) when its caller knows no tighter
 * cap (the CLI, the public `decodePng`); servers pass the model's upload cap instead.
 */
export const DEFAULT_MAX_PNG_PIXELS = 4096 * 4096;

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** Samples per pixel of each colour type. */
const CHANNELS: Readonly<Record<number, number>> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };

/**
 * The depths decoded here, per colour type: everything 8 bits per channel or packed below it. 16-bit samples
 * are refused: every consumer wants 8 bits, and they would double what a decode holds for no gain.
 */
const DEPTHS: Readonly<Record<number, readonly number[]>> = { 0: [1, 2, 4, 8], 2: [8], 3: [1, 2, 4, 8], 4: [8], 6: [8] };
const COLOUR_NAMES: Readonly<Record<number, string>> = { 0: "greyscale", 2: "RGB", 3: "palette", 4: "greyscale + alpha", 6: "RGBA" };

function invalid(field: string, message: string): ValidationError {
  return new ValidationError(`${field}: ${message}`, { field, data: { reason: "invalid_image" } });
}

/** Reads the IHDR chunk (always the first, 13 bytes); ValidationError naming `field` when the bytes are no PNG. */
export function readPngHeader(bytes: Uint8Array, field = "image"): PngHeader {
  if (bytes.length < 8 || !SIGNATURE.every((b, i) => bytes[i] === b)) throw invalid(field, "not a PNG image (no PNG signature)");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 33 || view.getUint32(8) !== 13 || String.fromCharCode(...bytes.subarray(12, 16)) !== "IHDR") {
    throw invalid(field, "not a valid PNG image (no IHDR header after the signature)");
  }
  return { width: view.getUint32(16), height: view.getUint32(20), bitDepth: bytes[24]!, colourType: bytes[25]!, interlaced: bytes[28] === 1 };
}

/**
 * Refuses a header this project does not decode: a zero side, a colour type or depth outside {@link DEPTHS},
 * an unknown interlace method, or more than `maxPixels` pixels (a LimitExceededError naming the cap, checked
 * before anything is allocated, so a small file declaring a huge image costs nothing).
 */
export function checkPngHeader(bytes: Uint8Array, h: PngHeader, opts: { maxPixels: number; field?: string; capNote?: string }): void {
  const { maxPixels, field = "image" } = opts;
  if (h.width === 0 || h.height === 0) throw invalid(field, `a PNG of ${h.width}x${h.height} pixels has no image`);
  const depths = DEPTHS[h.colourType];
  if (!depths) throw invalid(field, `PNG colour type ${h.colourType} does not exist (0, 2, 3, 4 and 6 do)`);
  if (!depths.includes(h.bitDepth)) {
    const fix = h.bitDepth === 16 ? "; save it with 8 bits per channel" : "";
    throw invalid(field, `${h.bitDepth}-bit ${COLOUR_NAMES[h.colourType]} PNGs are not supported (${depths.join(", ")} bits are)${fix}`);
  }
  if (bytes[26] !== 0 || bytes[27] !== 0 || bytes[28]! > 1) throw invalid(field, "unknown PNG compression, filter or interlace method");
  if (h.width * h.height > maxPixels) {
    throw new LimitExceededError(`${field}: ${h.width}x${h.height} is ${h.width * h.height} pixels, more than the ${maxPixels} ${opts.capNote ?? "an image may have here"}`, {
      field,
      data: { limit: maxPixels },
    });
  }
}

/** Adam7's passes: x start, y start, x step, y step. */
const ADAM7 = [
  [0, 0, 8, 8],
  [4, 0, 8, 8],
  [0, 4, 4, 8],
  [2, 0, 4, 4],
  [0, 2, 2, 4],
  [1, 0, 2, 2],
  [0, 1, 1, 2],
] as const;

/**
 * Bytes the image data inflates to, exactly: a filter byte plus the packed samples of every row. An interlaced
 * image is seven reduced images, each row of each non-empty pass with its own filter byte.
 */
export function inflatedSize(h: PngHeader): number {
  const bitsPerPixel = (CHANNELS[h.colourType] ?? 4) * h.bitDepth;
  const rows = (w: number, rowCount: number) => (w > 0 && rowCount > 0 ? rowCount * (1 + Math.ceil((w * bitsPerPixel) / 8)) : 0);
  if (!h.interlaced) return rows(h.width, h.height);
  let total = 0;
  for (const [x0, y0, dx, dy] of ADAM7) total += rows(Math.ceil((h.width - x0) / dx), Math.ceil((h.height - y0) / dy));
  return total;
}
