import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { ValidationError } from "../../errors/omni-error.js";
import { fromHalfBits } from "../float16.js";

/**
 * A bounded reader of safetensors files (8-byte little-endian header length, a JSON header naming each tensor's
 * dtype, shape and byte range, then the raw little-endian data). Only the header is read up front; each tensor
 * is read on demand through the open file, so a LoRA is never held whole.
 */

/** safetensors' own reader refuses headers above 100 MB; a LoRA's header is kilobytes. */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

const DTYPE_BYTES = { F32: 4, F16: 2, BF16: 2, F64: 8 } as const;
export type SafetensorsDType = keyof typeof DTYPE_BYTES;

export interface TensorInfo {
  dtype: SafetensorsDType;
  shape: number[];
  /** Byte range inside the data section (after the header). */
  begin: number;
  end: number;
}

/** An open safetensors file: its header parsed and checked; {@link read} reads one tensor as float32. */
export class SafetensorsFile {
  readonly path: string;
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  readonly metadata: Record<string, string>;
  readonly #fd: number;
  readonly #dataStart: number;

  private constructor(path: string, fd: number, dataStart: number, tensors: Map<string, TensorInfo>, metadata: Record<string, string>) {
    this.path = path;
    this.#fd = fd;
    this.#dataStart = dataStart;
    this.tensors = tensors;
    this.metadata = metadata;
  }

  /** Opens and checks `path`; a file that is not safetensors, is truncated or names an unknown dtype is a ValidationError naming it. */
  static open(path: string, field = "loras"): SafetensorsFile {
    const bad = (why: string): ValidationError => new ValidationError(`${path} is not a usable safetensors file: ${why}`, { field, data: { path } });
    let fd: number;
    try {
      fd = openSync(path, "r");
    } catch (err) {
      throw new ValidationError(`cannot open ${path}: ${(err as Error).message}`, { field, data: { path }, cause: err });
    }
    try {
      const size = fstatSync(fd).size;
      if (size < 8) throw bad(`${size} bytes, shorter than the 8-byte header length`);
      const head = Buffer.alloc(8);
      readSync(fd, head, 0, 8, 0);
      const headerLen = Number(head.readBigUInt64LE(0));
      if (headerLen > MAX_HEADER_BYTES) throw bad(`header of ${headerLen} bytes (at most ${MAX_HEADER_BYTES})`);
      if (8 + headerLen > size) throw bad(`header of ${headerLen} bytes runs past the end of the ${size}-byte file (truncated?)`);
      const headerBytes = Buffer.alloc(headerLen);
      readSync(fd, headerBytes, 0, headerLen, 8);
      let header: unknown;
      try {
        header = JSON.parse(headerBytes.toString("utf8"));
      } catch {
        throw bad("its header is not JSON");
      }
      if (!header || typeof header !== "object" || Array.isArray(header)) throw bad("its header is not a JSON object");
      const dataStart = 8 + headerLen;
      const dataLen = size - dataStart;
      const tensors = new Map<string, TensorInfo>();
      let metadata: Record<string, string> = {};
      for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
        if (name === "__metadata__") {
          if (raw && typeof raw === "object") metadata = Object.fromEntries(Object.entries(raw).filter(([, v]) => typeof v === "string")) as Record<string, string>;
          continue;
        }
        tensors.set(name, checkEntry(name, raw, dataLen, bad));
      }
      return new SafetensorsFile(path, fd, dataStart, tensors, metadata);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  /** Tensor `name` converted to float32 (LoRA math runs in float32 whatever the file stores). */
  read(name: string): Float32Array {
    const info = this.tensors.get(name);
    if (!info) throw new ValidationError(`${this.path} has no tensor ${name}`, { field: "loras", data: { path: this.path } });
    const bytes = Buffer.alloc(info.end - info.begin);
    const got = readSync(this.#fd, bytes, 0, bytes.length, this.#dataStart + info.begin);
    if (got !== bytes.length) throw new ValidationError(`${this.path} is truncated: ${name} is cut short`, { field: "loras", data: { path: this.path } });
    return toFloat32(bytes, info.dtype);
  }

  close(): void {
    closeSync(this.#fd);
  }
}

function checkEntry(name: string, raw: unknown, dataLen: number, bad: (why: string) => ValidationError): TensorInfo {
  const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  if (!e || typeof e !== "object") throw bad(`tensor ${name} has no description`);
  if (typeof e.dtype !== "string" || !(e.dtype in DTYPE_BYTES)) throw bad(`tensor ${name} has dtype ${String(e.dtype)} (readable: ${Object.keys(DTYPE_BYTES).join(", ")})`);
  const dtype = e.dtype as SafetensorsDType;
  if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw bad(`tensor ${name} has a bad shape`);
  const offs = e.data_offsets;
  if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && o >= 0) || offs[0] > offs[1]) throw bad(`tensor ${name} has bad data_offsets`);
  const [begin, end] = offs as [number, number];
  if (end > dataLen) throw bad(`tensor ${name} ends at byte ${end} of a ${dataLen}-byte data section (truncated?)`);
  const shape = e.shape as number[];
  const want = shape.reduce((n, d) => n * d, 1) * DTYPE_BYTES[dtype];
  if (end - begin !== want) throw bad(`tensor ${name} holds ${end - begin} bytes; shape [${shape.join(", ")}] in ${dtype} needs ${want}`);
  return { dtype, shape, begin, end };
}

function toFloat32(bytes: Buffer, dtype: SafetensorsDType): Float32Array {
  const n = bytes.length / DTYPE_BYTES[dtype];
  const out = new Float32Array(n);
  if (dtype === "F32") for (let i = 0; i < n; i++) out[i] = bytes.readFloatLE(i * 4);
  else if (dtype === "F64") for (let i = 0; i < n; i++) out[i] = bytes.readDoubleLE(i * 8);
  else if (dtype === "F16") for (let i = 0; i < n; i++) out[i] = fromHalfBits(bytes.readUInt16LE(i * 2));
  else {
    // bfloat16: the top half of a float32.
    const u = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) u[i] = bytes.readUInt16LE(i * 2) << 16;
  }
  return out;
}
