/**
 * PNG decoding off the event loop. pngjs decodes in JavaScript: a 4096² upload held `serve`'s thread for
 * 1.7 s and eight of them kept `/health` waiting 15.7 s. Images above {@link INLINE_MAX_PIXELS} are decoded
 * on a small piscina worker-thread pool instead; smaller ones (a few milliseconds) inline, where a thread hop
 * would cost more than the decode.
 */
import { availableParallelism } from "node:os";
import { extname } from "node:path";
import { fileURLToPath } from "node:url";
import { Piscina } from "piscina";
import { AbortedError, deserializeError, OmniError } from "../errors/omni-error.js";
import { checkPngHeader, DEFAULT_MAX_PNG_PIXELS, readPngHeader } from "./png-header.js";
import type { PngDecodeOptions } from "./png-guard.js";
import { decodedPng, fitted, type DecodedPng } from "./png-decoded.js";
import { resizeRgb } from "./image-resize.js";
import { pngCounters, type RgbImage } from "./png.js";
import type { DecodeReply, DecodeTask, ResizeReply, ResizeTask } from "./png-decode-protocol.js";

/** Images up to this many pixels (256², a few ms in pngjs) decode on the calling thread. */
export const INLINE_MAX_PIXELS = 256 * 256;

/**
 * An idle decode thread exits after this, ms: a spike of big uploads leaves no threads (nor the memory their
 * decodes took) behind.
 */
const IDLE_TIMEOUT_MS = 2_000;

let pool: Piscina<DecodeTask | ResizeTask, DecodeReply | ResizeReply> | null = null;

/** The pool's thread count: half the cores, 1 to 4, so decodes never starve the model's own workers. */
function threads(): number {
  return Math.max(1, Math.min(4, Math.floor(availableParallelism() / 2)));
}

function decodePool(): Piscina<DecodeTask | ResizeTask, DecodeReply | ResizeReply> {
  if (pool) return pool;
  // The worker file beside this one: .ts under tsx (the thread inherits its --import), .js from dist/.
  const ext = extname(fileURLToPath(import.meta.url));
  return (pool = new Piscina<DecodeTask | ResizeTask, DecodeReply | ResizeReply>({
    filename: new URL(`./png-decode-worker${ext}`, import.meta.url).href,
    minThreads: 0,
    maxThreads: threads(),
    idleTimeout: IDLE_TIMEOUT_MS,
  }));
}

export type { DecodedPng } from "./png-decoded.js";

/** Options of {@link decodePngAsync}. */
export interface AsyncPngDecodeOptions extends PngDecodeOptions {
  /** Abandons a decode still waiting for a thread (or running on one). */
  signal?: AbortSignal;
  /**
   * The caller gives `bytes` up: a decode on a pool thread moves their ArrayBuffer there (detached here, its
   * length 0) instead of copying it, when they span all of it (a view into a shared or bigger buffer is copied).
   * Spares serve's main thread a copy of each upload and the memory it holds while the thread decodes.
   */
  transfer?: boolean;
  /**
   * Resize the RGB to this size (bilinear, as `resizeRgb`) where it is decoded, and bring back only that: a
   * 2048² upload asked at 512² costs the caller 0.75 MiB, not 12 MiB. `rgbSize` then says the RGB's size.
   */
  fit?: { width: number; height: number };
}

/** `bytes`' ArrayBuffer when it may move to a thread: its own, whole, and not shared. */
function movable(bytes: Uint8Array): ArrayBuffer | null {
  const buf = bytes.buffer;
  return buf instanceof ArrayBuffer && bytes.byteOffset === 0 && bytes.byteLength === buf.byteLength ? buf : null;
}

/**
 * `decodePngRgba` without blocking the event loop: the same bounds and errors (ValidationError naming
 * `opts.field`, LimitExceededError naming the pixel cap), the header checked here before any thread is asked.
 * Returns RGBA, RGB and the transparency flag, all computed off the event loop. Counted in `pngCounters`.
 */
export async function decodePngAsync(bytes: Uint8Array, opts: AsyncPngDecodeOptions = {}): Promise<DecodedPng> {
  pngCounters.decodes++;
  const field = opts.field ?? "image";
  const maxPixels = Math.min(opts.maxPixels ?? DEFAULT_MAX_PNG_PIXELS, DEFAULT_MAX_PNG_PIXELS);
  const header = readPngHeader(bytes, field);
  checkPngHeader(bytes, header, { maxPixels, field, capNote: opts.capNote });
  const small = (w: number, h: number) => w * h <= INLINE_MAX_PIXELS;
  if (small(header.width, header.height) && (!opts.fit || small(opts.fit.width, opts.fit.height))) return fitted(decodedPng(bytes, { maxPixels, field }), opts.fit);
  let reply: DecodeReply;
  try {
    const moved = opts.transfer ? movable(bytes) : null;
    reply = (await decodePool().run({ bytes, maxPixels, field, fit: opts.fit }, { signal: opts.signal ?? null, transferList: moved ? [moved] : undefined })) as DecodeReply;
  } catch (err) {
    if (opts.signal?.aborted) throw new AbortedError(`${field}: the PNG decode was abandoned`, { cause: err });
    // A thread that died (out of memory, killed): the decode did not happen; say so, not piscina's internals.
    throw new OmniError(`${field}: the PNG decode thread failed: ${(err as Error).message}`, "OMNI_ERR_INTERNAL", { cause: err });
  }
  if (!reply.ok) throw deserializeError(reply.error);
  return { width: reply.width, height: reply.height, rgba: reply.rgba, rgb: reply.rgb, rgbSize: reply.rgbSize, transparent: reply.transparent };
}

/**
 * {@link resizeRgb} without blocking the event loop for big outputs (2048² → 1024² took ~1 s of the main
 * thread): on the decode pool's threads above {@link INLINE_MAX_PIXELS} output pixels, inline below.
 */
export async function resizeRgbAsync(img: RgbImage, width: number, height: number, signal?: AbortSignal): Promise<RgbImage> {
  if (img.width === width && img.height === height) return img;
  if (width * height <= INLINE_MAX_PIXELS) return resizeRgb(img, width, height);
  const task: ResizeTask = { width: img.width, height: img.height, data: img.data, toWidth: width, toHeight: height };
  let reply: ResizeReply;
  try {
    reply = (await decodePool().run(task, { name: "resize", signal: signal ?? null })) as ResizeReply;
  } catch (err) {
    if (signal?.aborted) throw new AbortedError("the image resize was abandoned", { cause: err });
    throw new OmniError(`the image resize thread failed: ${(err as Error).message}`, "OMNI_ERR_INTERNAL", { cause: err });
  }
  return { width: reply.width, height: reply.height, data: reply.data };
}

/** Stops the pool's threads (a later decode starts a new pool); for tests and benches that count threads. */
export async function closePngDecodePool(): Promise<void> {
  const p = pool;
  pool = null;
  await p?.destroy();
}

/** Threads the pool runs now (0 when idle long enough, or never used). */
export function pngDecodeThreads(): number {
  return pool?.threads.length ?? 0;
}
