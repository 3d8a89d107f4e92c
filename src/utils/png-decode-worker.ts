/**
 * A PNG decode pool thread (piscina loads this file): decodes with the same bounded decoder as the main
 * thread, and answers errors as data so the parent rebuilds them into their classes.
 */
import { setPriority } from "node:os";
import { move, transferableSymbol, valueSymbol } from "piscina";
import { serializeError } from "../errors/omni-error.js";
import { resizeRgb } from "./image-resize.js";
import { decodedPng, fitted } from "./png-decoded.js";
import type { DecodeReply, DecodeTask, ResizeReply, ResizeTask } from "./png-decode-protocol.js";

/** The decode threads' nice value (0 normal, 19 lowest). */
const DECODE_THREAD_NICE = 10;

// Decodes are background work: on Linux a thread's nice value is its own (setpriority on the calling thread), so
// this thread yields the cores to the server's event loop (its /health and routing) when both want one.
try {
  setPriority(DECODE_THREAD_NICE);
} catch {
  // Not permitted or not supported here: decode at the normal priority.
}

export default function decode(task: DecodeTask): DecodeReply {
  let reply: DecodeReply;
  try {
    const img = fitted(decodedPng(task.bytes, { maxPixels: task.maxPixels, field: task.field }), task.fit);
    // The buffers move to the parent, so each must hold nothing else (pngjs allocates its output on its own).
    const own = (a: Uint8Array) => (a.byteOffset === 0 && a.byteLength === a.buffer.byteLength ? a : a.slice());
    const rgb = own(img.rgb);
    const rgba = img.rgba && own(img.rgba);
    reply = { ok: true, width: img.width, height: img.height, rgb, rgbSize: img.rgbSize, transparent: img.transparent, rgba };
    return move({ [transferableSymbol]: rgba ? [rgb.buffer, rgba.buffer] : [rgb.buffer], [valueSymbol]: reply } as never) as unknown as DecodeReply;
  } catch (err) {
    return { ok: false, error: serializeError(err) };
  }
}

/** A resize of an upload to the size a request asks for (piscina's `name: "resize"`): per-pixel work off the event loop. */
export function resize(task: ResizeTask): ResizeReply {
  const out = resizeRgb({ width: task.width, height: task.height, data: task.data }, task.toWidth, task.toHeight);
  const reply: ResizeReply = { width: out.width, height: out.height, data: out.data };
  return move({ [transferableSymbol]: [out.data.buffer], [valueSymbol]: reply } as never) as unknown as ResizeReply;
}
