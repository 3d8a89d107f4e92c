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
