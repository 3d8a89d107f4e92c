import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { basename } from "node:path";
import protobuf from "protobufjs";
import { DATA_LOCATION_EXTERNAL, FIELD, concatBytes, encodeField } from "./proto-wire.js";

const MODEL_GRAPH = FIELD.model.graph;
const GRAPH_INITIALIZER = FIELD.graph.initializer;
const TENSOR_RAW_DATA = FIELD.tensor.rawData;
const TENSOR_EXTERNAL_DATA = FIELD.tensor.externalData;
const TENSOR_DATA_LOCATION = FIELD.tensor.dataLocation;
const LOCATION_EXTERNAL = DATA_LOCATION_EXTERNAL;

/** Tensors smaller than this stay inline (shapes, scales): not worth an external reference. */
const MIN_EXTERNAL_BYTES = 1024;

/** Reads a file by position without holding it in memory: a small window moved on demand. */
class FileReader {
  readonly #fd: number;
  #window = Buffer.alloc(0);
  #at = 0;
  constructor(fd: number) {
    this.#fd = fd;
  }
  bytes(pos: number, len: number): Uint8Array {
    if (pos < this.#at || pos + len > this.#at + this.#window.length) {
      this.#window = Buffer.alloc(Math.max(len, 1 << 16));
      const got = readSync(this.#fd, this.#window, 0, this.#window.length, pos);
      this.#window = this.#window.subarray(0, got);
      this.#at = pos;
      if (got < len) throw new Error(`truncated ONNX file: wanted ${len} bytes at ${pos}, found ${got}`);
    }
    return this.#window.subarray(pos - this.#at, pos - this.#at + len);
  }
  varint(pos: number): { value: number; next: number } {
    let value = 0;
    for (let i = 0, scale = 1; i < 10; i++, scale *= 128) {
      const b = this.bytes(pos + i, 1)[0]!;
      value += (b & 0x7f) * scale;
      if (b < 0x80) return { value, next: pos + i + 1 };
    }
    throw new Error(`bad varint at byte ${pos}`);
  }
}

interface Field {
  field: number;
  wire: number;
  start: number;
  payload: number;
  end: number;
}

function* fields(r: FileReader, start: number, end: number): Generator<Field> {
  let pos = start;
  while (pos < end) {
    const tag = r.varint(pos);
    const field = Math.floor(tag.value / 8);
    const wire = tag.value & 7;
    let payload = tag.next;
    let next: number;
    if (wire === 0) next = r.varint(tag.next).next;
    else if (wire === 1) next = tag.next + 8;
    else if (wire === 5) next = tag.next + 4;
    else if (wire === 2) {
      const len = r.varint(tag.next);
      payload = len.next;
      next = len.next + len.value;
    } else throw new Error(`unsupported protobuf wire type ${wire} at byte ${pos}`);
    yield { field, wire, start: pos, payload, end: next };
    pos = next;
  }
}

function entry(key: string, value: string): Uint8Array {
  return protobuf.Writer.create().uint32((1 << 3) | 2).string(key).uint32((2 << 3) | 2).string(value).finish();
}

/**
 * The graph of an ONNX file whose weights are inline, with each large initializer turned into an external-data
 * reference to its own bytes in that same file (`location` = the file, `offset`, `length`). onnxruntime then
 * reads weights as it does for diffusers' `weights.pb` exports, where a worker's resident memory is the weights
 * once; loading the inline file kept a second copy of every weight that its layout optimisations rewrote
 * (SD 1.5's VAE decoder: 189 MiB of weights, 355 MiB resident). The file is read through a small window, never
 * whole. Returns null when no initializer is large enough to move.
 */
export function externalizeInlineWeights(path: string): Uint8Array | null {
  const fd = openSync(path, "r");
  try {
    const r = new FileReader(fd);
    // fstat through the fd already open: the path could be swapped between a stat and the open.
    const size = fstatSync(fd).size;
    const parts: Uint8Array[] = [];
    let moved = 0;
    for (const top of fields(r, 0, size)) {
      if (top.field !== MODEL_GRAPH || top.wire !== 2) {
        parts.push(Uint8Array.from(r.bytes(top.start, top.end - top.start)));
        continue;
      }
      const graph: Uint8Array[] = [];
      for (const g of fields(r, top.payload, top.end)) {
        const raw = g.field === GRAPH_INITIALIZER && g.wire === 2 ? rawDataField(r, g) : null;
        if (!raw || raw.end - raw.payload < MIN_EXTERNAL_BYTES) {
          graph.push(Uint8Array.from(r.bytes(g.start, g.end - g.start)));
          continue;
        }
        const tensor: Uint8Array[] = [];
        for (const t of fields(r, g.payload, g.end)) if (t.field !== TENSOR_RAW_DATA) tensor.push(Uint8Array.from(r.bytes(t.start, t.end - t.start)));
        tensor.push(protobuf.Writer.create().uint32(TENSOR_DATA_LOCATION << 3).int32(LOCATION_EXTERNAL).finish());
        tensor.push(encodeField(TENSOR_EXTERNAL_DATA, entry("location", basename(path))));
        tensor.push(encodeField(TENSOR_EXTERNAL_DATA, entry("offset", String(raw.payload))));
        tensor.push(encodeField(TENSOR_EXTERNAL_DATA, entry("length", String(raw.end - raw.payload))));
        graph.push(encodeField(GRAPH_INITIALIZER, concatBytes(tensor)));
        moved++;
      }
      parts.push(encodeField(MODEL_GRAPH, concatBytes(graph)));
    }
    return moved ? concatBytes(parts) : null;
  } finally {
    closeSync(fd);
  }
}

function rawDataField(r: FileReader, tensor: Field): Field | null {
  for (const t of fields(r, tensor.payload, tensor.end)) if (t.field === TENSOR_RAW_DATA && t.wire === 2) return t;
  return null;
}
