/**
 * What the PNG decode pool's parent (png-decode-pool.ts) and its worker threads (png-decode-worker.ts) send
 * each other: the only module both sides share.
 */
import type { SerializedError } from "../errors/omni-error.js";

/** One decode: the PNG bytes (copied to the thread, or moved when the caller gives them up) and its limits. */
export interface DecodeTask {
  bytes: Uint8Array;
  maxPixels: number;
  field: string;
  /** Resize the RGB to this size on the thread, so only that many pixels come back (absent: none). */
  fit?: { width: number; height: number };
}

/**
 * The decoded image, its buffers moved (not copied) back: RGB (alpha dropped), whether any pixel is not
 * opaque and then RGBA, all computed on the thread so the caller's event loop does no per-pixel work. Or the
 * error as it travels between threads.
 */
export type DecodeReply =
  | { ok: true; width: number; height: number; rgb: Uint8Array; rgbSize?: { width: number; height: number }; transparent: boolean; rgba: Uint8Array | null }
  | { ok: false; error: SerializedError };

/** One bilinear resize (image-resize.ts) of RGB pixels, copied to the thread; the result moves back. */
export interface ResizeTask {
  width: number;
  height: number;
  data: Uint8Array;
  toWidth: number;
  toHeight: number;
}

export interface ResizeReply {
  width: number;
  height: number;
  data: Uint8Array;
}
