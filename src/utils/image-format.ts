/**
 * Names an image file's format from its first bytes, so a refusal can say "a JPEG image; PNG only" instead
 * of the PNG decoder's own complaint about bytes it does not know.
 */

/** Formats recognised by their signature (magic bytes). */
export type ImageFormat = "PNG" | "JPEG" | "WebP" | "GIF" | "BMP" | "TIFF" | "AVIF" | "HEIC" | "JPEG XL" | "QOI";

const startsWith = (b: Uint8Array, sig: readonly number[], at = 0): boolean => b.length >= at + sig.length && sig.every((v, i) => b[at + i] === v);
const ascii = (b: Uint8Array, from: number, to: number): string => String.fromCharCode(...b.subarray(from, to));

/** The format whose signature `bytes` start with, or null when none is known. */
export function sniffImageFormat(bytes: Uint8Array): ImageFormat | null {
  if (startsWith(bytes, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return "PNG";
  if (startsWith(bytes, [0xff, 0xd8, 0xff])) return "JPEG";
  if (ascii(bytes, 0, 4) === "RIFF" && ascii(bytes, 8, 12) === "WEBP") return "WebP";
  if (/^GIF8[79]a$/.test(ascii(bytes, 0, 6))) return "GIF";
  if (ascii(bytes, 0, 2) === "BM" && bytes.length >= 14) return "BMP";
  if (startsWith(bytes, [0x49, 0x49, 0x2a, 0x00]) || startsWith(bytes, [0x4d, 0x4d, 0x00, 0x2a])) return "TIFF";
  if (ascii(bytes, 4, 8) === "ftyp") {
    const brand = ascii(bytes, 8, 12);
    if (brand === "avif" || brand === "avis") return "AVIF";
    if (/^hei[cx]|^mif1|^msf1/.test(brand)) return "HEIC";
  }
  if (startsWith(bytes, [0xff, 0x0a]) || startsWith(bytes, [0, 0, 0, 0x0c, 0x4a, 0x58, 0x4c, 0x20])) return "JPEG XL";
  if (ascii(bytes, 0, 4) === "qoif") return "QOI";
  return null;
}

/** File name extensions of the formats above (lower case, with the dot). */
export const IMAGE_EXTENSIONS: Readonly<Record<string, ImageFormat>> = {
  ".png": "PNG",
  ".jpg": "JPEG",
  ".jpeg": "JPEG",
  ".jfif": "JPEG",
  ".webp": "WebP",
  ".gif": "GIF",
  ".bmp": "BMP",
  ".tif": "TIFF",
  ".tiff": "TIFF",
  ".avif": "AVIF",
  ".heic": "HEIC",
  ".heif": "HEIC",
  ".jxl": "JPEG XL",
  ".qoi": "QOI",
};
