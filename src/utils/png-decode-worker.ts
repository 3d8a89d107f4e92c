/**
 * A PNG decode pool thread (piscina loads this file): decodes with the same bounded decoder as the main
 * thread, and answers errors as data so the parent rebuilds them into their classes.
 */
import { move, transferableSymbol, valueSymbol } from "piscina";
import { serializeError } from "../errors/omni-error.js";
import { decodePngRgbaUncounted } from "./png.js";
import type { DecodeReply, DecodeTask } from "./png-decode-protocol.js";

export default function decode(task: DecodeTask): DecodeReply {
  let reply: DecodeReply;
  try {
    const img = decodePngRgbaUncounted(task.bytes, { maxPixels: task.maxPixels, field: task.field });
    // The pixels' buffer moves to the parent, so it must hold nothing else (pngjs allocates it on its own).
    const own = img.rgba.byteOffset === 0 && img.rgba.byteLength === img.rgba.buffer.byteLength ? img.rgba : img.rgba.slice();
    reply = { ok: true, width: img.width, height: img.height, rgba: own };
    const buffer = own.buffer;
    return move({ [transferableSymbol]: [buffer], [valueSymbol]: reply } as never) as unknown as DecodeReply;
  } catch (err) {
    return { ok: false, error: serializeError(err) };
  }
}
