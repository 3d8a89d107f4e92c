/**
 * The CLI's image files: `--image` and `--mask` read and decoded when the flag is parsed (so a missing,
 * foreign or broken file is refused like any bad flag value, before the model loads), and the `--out` path
 * checked before generating (so a typo does not cost a whole generation and end in a stack trace).
 */
import { accessSync, constants, readFileSync, statSync } from "node:fs";
import { dirname, extname, resolve } from "node:path";
import { InvalidArgumentError } from "commander";
import { ValidationError } from "../errors/omni-error.js";
import { openAIMask } from "../server/shared/edit-images.js";
import { IMAGE_EXTENSIONS, sniffImageFormat } from "../utils/image-format.js";
import { decodePngRgba, luminance, rgbOf, type MaskImage, type RgbaImage, type RgbImage } from "../utils/png.js";

/** Reads a PNG file as RGBA; anything else is an InvalidArgumentError naming the file and what it is. */
function readPng(path: string): RgbaImage {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    throw new InvalidArgumentError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const format = sniffImageFormat(bytes);
  // The server's rule (server.md: "PNG only (JPEG or WebP is a 400)"), said before pngjs would say
  // "unrecognised content at end of stream" about a JPEG.
  if (format !== "PNG") throw new InvalidArgumentError(`${path} is ${format ? `a ${format} image` : "not an image this CLI knows"}; PNG only (convert it to PNG first)`);
  try {
    return decodePngRgba(bytes);
  } catch (err) {
    // The decoder names the request field ("image: ..."); here the file is what to name.
    throw new InvalidArgumentError(`${path}: ${(err as Error).message.replace(/^image: /, "")}`);
  }
}

/** `--image <file.png>`: the init image (RGB; alpha dropped). */
export function imageFileArg(path: string): RgbImage {
  return rgbOf(readPng(path));
}

/** How a mask file was read, for the one line the CLI prints about a mask with transparency. */
export type MaskNote = (line: string) => void;

/**
 * `--mask <file.png>`: white = repaint, black = keep (luminance, soft values kept). A mask with transparency
 * is read as the server reads an OpenAI edit mask: its fully transparent pixels are repainted; the rest is
 * kept. Read by luminance, such a mask (often black with transparent holes) would repaint nothing, silently.
 */
export function maskFileArg(path: string, note: MaskNote = (l) => process.stderr.write(`${l}\n`)): MaskImage {
  const img = readPng(path);
  const { rgba, width, height } = img;
  let transparent = false;
  for (let i = 3; i < rgba.length && !transparent; i += 4) transparent = rgba[i]! < 255;
  let mask: MaskImage;
  if (transparent) {
    mask = openAIMask({ ...img, transparent });
  } else {
    const data = new Uint8Array(width * height);
    for (let p = 0; p < data.length; p++) data[p] = Math.round(luminance(rgba, p * 4));
    mask = { width, height, data };
  }
  let repainted = 0;
  for (const v of mask.data) if (v >= 128) repainted++;
  if (transparent) note(`omni-diffusion: --mask ${path} has transparency: its fully transparent pixels are repainted (OpenAI's convention): ${repainted} of ${mask.data.length}`);
  if (repainted === 0) note(`omni-diffusion: warning: --mask ${path} repaints nothing (no pixel is ${transparent ? "fully transparent" : "white or light"}); the output will be the --image`);
  return mask;
}

/**
 * Checks `--out` before anything is generated: a PNG name (or none), in a folder that exists and can be
 * written. Throws a ValidationError naming `--out` and what to change.
 */
export function checkOutPath(out: string): void {
  const ext = extname(out).toLowerCase();
  if (ext !== "" && ext !== ".png") {
    const named = Object.hasOwn(IMAGE_EXTENSIONS, ext) ? `names a ${IMAGE_EXTENSIONS[ext]} file` : `has the extension ${ext}`;
    throw new ValidationError(`--out ${out} ${named}, but generate writes PNG only: give a .png name`, { field: "--out" });
  }
  const dir = dirname(resolve(out));
  let isDir: boolean;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    throw new ValidationError(`--out ${out}: the folder ${dir} does not exist (create it first)`, { field: "--out" });
  }
  if (!isDir) throw new ValidationError(`--out ${out}: ${dir} is not a folder`, { field: "--out" });
  try {
    accessSync(dir, constants.W_OK);
  } catch {
    throw new ValidationError(`--out ${out}: the folder ${dir} is not writable`, { field: "--out" });
  }
  let target: ReturnType<typeof statSync> | undefined;
  try {
    target = statSync(out);
  } catch {
    target = undefined; // a new file
  }
  if (target?.isDirectory()) throw new ValidationError(`--out ${out} is a folder; give a file name such as ${resolve(out, "out.png")}`, { field: "--out" });
}
