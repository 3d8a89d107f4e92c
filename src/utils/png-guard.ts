import { inflate, inflateSync } from "node:zlib";
import { promisify } from "node:util";
import { ValidationError } from "../errors/omni-error.js";
import { checkPngHeader, DEFAULT_MAX_PNG_PIXELS, inflatedSize, readPngHeader, type PngHeader } from "./png-header.js";

/** Limits of one PNG decode. */
export interface PngDecodeOptions {
  /** Most pixels accepted (default {@link DEFAULT_MAX_PNG_PIXELS}); more is a LimitExceededError naming the cap. */
  maxPixels?: number;
  /** The request field the bytes came in, named in every error (default `image`). */
  field?: string;
  /** Says where the pixel cap comes from, after "more than the N" (default "an image may have here"). */
  capNote?: string;
}

function invalid(field: string, message: string, cause?: unknown): ValidationError {
  return new ValidationError(`${field}: ${message}`, { field, cause, data: { reason: "invalid_image" } });
}

/** The IDAT chunks' payloads, concatenated (the zlib stream of the pixels). */
function imageData(bytes: Uint8Array, field: string): Buffer {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const parts: Uint8Array[] = [];
  for (let at = 8; ; ) {
    if (at + 12 > bytes.length) throw invalid(field, "not a valid PNG image (it ends before its IEND chunk)");
    const length = view.getUint32(at);
    const type = String.fromCharCode(...bytes.subarray(at + 4, at + 8));
    if (at + 12 + length > bytes.length) throw invalid(field, `not a valid PNG image (its ${type} chunk runs past the end of the file)`);
    if (type === "IDAT") parts.push(bytes.subarray(at + 8, at + 8 + length));
    if (type === "IEND") break;
    at += 12 + length;
  }
  if (parts.length === 0) throw invalid(field, "not a valid PNG image (no IDAT chunk)");
  return Buffer.concat(parts);
}

/**
 * Checks, before pngjs sees them, that PNG bytes decode within bounds: the header's size and format (see
 * `checkPngHeader`), then the pixel data inflated with zlib's `maxOutputLength` set to exactly what the header
 * implies. pngjs bounds the inflate of a plain PNG itself but not of an interlaced one (it inflates Adam7 data
 * with no cap: a 1 MiB upload took 2 GB), so a stream that inflates past the bound is refused here, having
 * cost at most the bound. Returns the header.
 */
export function guardPng(bytes: Uint8Array, opts: PngDecodeOptions = {}): PngHeader {
  const { header, field, data, expected } = guardHeader(bytes, opts);
  let inflated: Buffer;
  try {
    inflated = inflateSync(data, { maxOutputLength: expected });
  } catch (err) {
    throw inflateError(err, header, field, expected);
  }
  return checkInflated(inflated, header, field, expected);
}

const inflateAsync = promisify(inflate);

/**
 * {@link guardPng} with the inflate on libuv's thread pool, for bytes that are checked now but decoded only
 * if someone reads their pixels (a remote peer's image, passed on as it came): the same bounds and errors.
 */
export async function guardPngAsync(bytes: Uint8Array, opts: PngDecodeOptions = {}): Promise<PngHeader> {
  const { header, field, data, expected } = guardHeader(bytes, opts);
  let inflated: Buffer;
  try {
    inflated = await inflateAsync(data, { maxOutputLength: expected });
  } catch (err) {
    throw inflateError(err, header, field, expected);
  }
  return checkInflated(inflated, header, field, expected);
}

function guardHeader(bytes: Uint8Array, opts: PngDecodeOptions): { header: PngHeader; field: string; data: Buffer; expected: number } {
  const field = opts.field ?? "image";
  const header = readPngHeader(bytes, field);
  checkPngHeader(bytes, header, { maxPixels: Math.min(opts.maxPixels ?? DEFAULT_MAX_PNG_PIXELS, DEFAULT_MAX_PNG_PIXELS), field, capNote: opts.capNote });
  return { header, field, data: imageData(bytes, field), expected: inflatedSize(header) };
}

function inflateError(err: unknown, header: PngHeader, field: string, expected: number): Error {
  if (err instanceof ValidationError) return err;
  const what = `${header.width}x${header.height}${header.interlaced ? " interlaced" : ""}`;
  if ((err as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE") {
    return invalid(field, `refused: its pixel data inflates past the ${expected} bytes a ${what} PNG holds (a decompression bomb)`, err);
  }
  return invalid(field, `not a valid PNG image (its pixel data does not inflate: ${(err as Error).message})`, err);
}

function checkInflated(inflated: Buffer, header: PngHeader, field: string, expected: number): PngHeader {
  if (inflated.length < expected) {
    throw invalid(field, `not a valid PNG image (its pixel data inflates to ${inflated.length} of the ${expected} bytes its ${header.width}x${header.height} header implies)`);
  }
  return header;
}
