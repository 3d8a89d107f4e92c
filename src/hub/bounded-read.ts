import type { Readable } from "node:stream";
import { AbortedError, OmniError } from "../errors/omni-error.js";

/** What {@link readUpTo} read: at most `max` bytes, and whether that was the whole body. */
export interface BoundedBody {
  bytes: Buffer;
  /** False when the body had more than `max` bytes (the rest was not read: the stream is destroyed). */
  complete: boolean;
}

/**
 * Reads a response body into memory, but never more than `max` bytes: a hub answering with an endless or huge body
 * (a 150 MB listing took 892 MB of RAM through `body.json()`) costs at most `max`. `onChunk` runs for each chunk
 * (progress for a no-progress deadline).
 */
export async function readUpTo(body: Readable, max: number, onChunk?: () => void): Promise<BoundedBody> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    onChunk?.();
    if (n + chunk.length > max) {
      chunks.push(chunk.subarray(0, max - n));
      discard(body);
      return { bytes: Buffer.concat(chunks, max), complete: false };
    }
    chunks.push(chunk);
    n += chunk.length;
  }
  return { bytes: Buffer.concat(chunks, n), complete: true };
}

/** Drops a body not wanted (the answer was refused): the connection closes, and the stream's abort error goes nowhere. */
export function discard(body: Readable): void {
  body.on("error", () => undefined);
  body.destroy();
}

/**
 * The error to throw once `signal` has aborted: its reason when that is an {@link OmniError} (a stall deadline
 * aborts with a TransportError that says what stalled), else an {@link AbortedError}.
 */
export function abortReason(signal: AbortSignal, message: string, cause?: unknown): OmniError {
  return signal.reason instanceof OmniError ? signal.reason : new AbortedError(message, { cause });
}
