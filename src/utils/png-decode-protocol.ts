/**
 * What the PNG decode pool's parent (png-decode-pool.ts) and its worker threads (png-decode-worker.ts) send
 * each other: the only module both sides share.
 */
import type { SerializedError } from "../errors/omni-error.js";

/** One decode: the PNG bytes (copied to the thread) and its limits. */
export interface DecodeTask {
  bytes: Uint8Array;
  maxPixels: number;
  field: string;
}

/** The decoded RGBA (its buffer moved, not copied, back), or the error as it travels between threads. */
export type DecodeReply = { ok: true; width: number; height: number; rgba: Uint8Array } | { ok: false; error: SerializedError };
