import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { join, normalize, isAbsolute } from "node:path";
import { ModelLoadError } from "../../errors/omni-error.js";
import { fromHalfBits, toHalfBits } from "../float16.js";
import { DATA_LOCATION_EXTERNAL, DTYPE, FIELD, decodeNode, decodeTensor, encodeTensor, fieldHeader, fieldSpans } from "../onnx-graph/proto-wire.js";

/**
 * The weights a LoRA can patch in an exported graph, found through the graph: exports name MatMul weights
 * anonymously (`onnx::MatMul_1234`), so a layer is found by its node's name
 * (`/down_blocks.0/attentions.0/transformer_blocks.0/attn1/to_q/MatMul` → module
 * `down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q`) or, for Conv/Gemm, by the initializer's own name
 * (`…proj_in.weight`). And the rewrite that puts fused weights back as inline initializers.
 */

/** ONNX data types a weight can be fused in. */
export const ONNX_FLOAT = DTYPE.FLOAT;
export const ONNX_FLOAT16 = DTYPE.FLOAT16;
export const ONNX_BFLOAT16 = DTYPE.BFLOAT16;
const FUSABLE = new Set<number>([ONNX_FLOAT, ONNX_FLOAT16, ONNX_BFLOAT16]);
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export interface Initializer {
  name: string;
  dims: number[];
  dataType: number;
  /** Inline bytes, or where they lie in an external file. */
  raw?: Uint8Array;
  floatData?: number[];
  external?: { location: string; offset: number; length: number };
}

/** One patchable layer: the module path, the op that consumes the weight and how it lays the weight out. */
export interface LayerWeight {
  module: string;
  op: "MatMul" | "Gemm" | "Conv";
  /** `in_out`: [in, out] (MatMul, Gemm without transB); `out_in`: torch's [out, in, …] (Gemm transB, Conv). */
  layout: "in_out" | "out_in";
  init: Initializer;
}

/** The graph's initializers and patchable layers, keyed by module path. */
export function findLayerWeights(graph: Uint8Array): Map<string, LayerWeight> {
  const inits = new Map<string, Initializer>();
  const nodes: ReturnType<typeof decodeNode>[] = [];
  /** Cast outputs → their inputs: float16-weight exports cast each weight to float32 in front of its op. */
  const castOf = new Map<string, string>();
  for (const top of fieldSpans(graph)) {
    if (top.field !== FIELD.model.graph) continue;
    for (const g of fieldSpans(graph, top.payload, top.end)) {
      if (g.field === FIELD.graph.initializer) {
        const init = decodeInitializer(graph.subarray(g.payload, g.end));
        inits.set(init.name, init);
      } else if (g.field === FIELD.graph.node) {
        const n = decodeNode(graph, g);
        if (n.opType === "MatMul" || n.opType === "Gemm" || n.opType === "Conv") nodes.push(n);
        else if (n.opType === "Cast" && n.input[0] && n.output[0]) castOf.set(n.output[0], n.input[0]);
      }
    }
  }
  const layers = new Map<string, LayerWeight>();
  for (const n of nodes) {
    const input = n.input[1] ?? "";
    const init = inits.get(input) ?? inits.get(castOf.get(input) ?? "");
    if (!init || !FUSABLE.has(init.dataType)) continue;
    const op = n.opType as LayerWeight["op"];
    const transB = n.attribute?.find((a) => a.name === "transB")?.i ?? 0;
    const layout = op === "MatMul" || (op === "Gemm" && !transB) ? "in_out" : "out_in";
    const weight = { op, layout, init } as const;
    // The initializer's own name is the module's when the export kept it (Conv, Gemm); else the node's scope.
    if (init.name.endsWith(".weight")) layers.set(init.name.slice(0, -".weight".length), { module: init.name.slice(0, -".weight".length), ...weight });
    const scope = moduleOfNode(n.name ?? "");
    if (scope && !layers.has(scope)) layers.set(scope, { module: scope, ...weight });
  }
  return layers;
}

/** `/a/b.0/c/MatMul` → `a.b.0.c`: the exporter names a node by its module scope and op. */
export function moduleOfNode(name: string): string | null {
  const parts = name.split("/").filter(Boolean);
  if (parts.length < 2) return null;
  return parts.slice(0, -1).join(".");
}

function decodeInitializer(bytes: Uint8Array): Initializer {
  const t = decodeTensor(bytes);
  const init: Initializer = { name: t.name ?? "", dims: t.dims ?? [], dataType: t.dataType ?? 0 };
  if (t.dataLocation === DATA_LOCATION_EXTERNAL) {
    const kv = Object.fromEntries((t.externalData ?? []).map((e) => [e.key, e.value]));
    init.external = { location: kv.location ?? "", offset: Number(kv.offset ?? 0), length: Number(kv.length ?? -1) };
  } else if (t.rawData?.length) init.raw = t.rawData;
  else init.floatData = t.floatData;
  return init;
}

/** Bytes of the weight in its stored dtype (float32 or float16). */
export function initializerBytes(init: Initializer): number {
  return init.dims.reduce((n, d) => n * d, 1) * (init.dataType === ONNX_FLOAT ? 4 : 2);
}

/** The weight as float32 (external data read from `dir`, bounded by the file). */
export function readInitializer(init: Initializer, dir: string): Float32Array {
  const count = init.dims.reduce((n, d) => n * d, 1);
  const bytes = initializerBytes(init);
  let raw = init.raw;
  if (init.external) raw = readExternal(init, dir, bytes);
  if (!raw) return Float32Array.from(init.floatData ?? []);
  if (raw.length !== bytes) throw new ModelLoadError(`initializer ${init.name} holds ${raw.length} bytes, its shape needs ${bytes}`);
  // Little-endian hosts (every platform onnxruntime-node ships for) copy float32 data in one go.
  if (init.dataType === ONNX_FLOAT && LITTLE_ENDIAN) return new Float32Array(Uint8Array.from(raw).buffer);
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const out = new Float32Array(count);
  if (init.dataType === ONNX_FLOAT) for (let i = 0; i < count; i++) out[i] = view.getFloat32(i * 4, true);
  else if (init.dataType === ONNX_FLOAT16) for (let i = 0; i < count; i++) out[i] = fromHalfBits(view.getUint16(i * 2, true));
  else {
    const u = new Uint32Array(out.buffer);
    for (let i = 0; i < count; i++) u[i] = view.getUint16(i * 2, true) << 16;
  }
  return out;
}

function readExternal(init: Initializer, dir: string, want: number): Uint8Array {
  const loc = init.external!;
  const rel = normalize(loc.location);
  if (isAbsolute(rel) || rel.startsWith("..")) throw new ModelLoadError(`initializer ${init.name}: external data outside the model folder (${loc.location})`);
  const length = loc.length >= 0 ? loc.length : want;
  if (length !== want) throw new ModelLoadError(`initializer ${init.name}: external length ${length}, its shape needs ${want}`);
  const fd = openSync(join(dir, rel), "r");
  try {
    if (loc.offset + length > fstatSync(fd).size) throw new ModelLoadError(`initializer ${init.name}: external data past the end of ${loc.location}`);
    const buf = Buffer.alloc(length);
    readSync(fd, buf, 0, length, loc.offset);
    return buf;
  } finally {
    closeSync(fd);
  }
}

/** A fused weight back in its initializer's dtype, as the TensorProto bytes that replace the original. */
export function encodeInitializer(init: Initializer, values: Float32Array): Uint8Array {
  let raw: Uint8Array;
  if (init.dataType === ONNX_FLOAT) raw = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  else {
    const half = new Uint16Array(values.length);
    if (init.dataType === ONNX_FLOAT16) for (let i = 0; i < values.length; i++) half[i] = toHalfBits(values[i]!);
    else {
      // bfloat16: round the float32 to nearest even on its top 16 bits.
      const u = new Uint32Array(values.buffer, values.byteOffset, values.length);
      for (let i = 0; i < values.length; i++) half[i] = (u[i]! + 0x7fff + ((u[i]! >>> 16) & 1)) >>> 16;
    }
    raw = new Uint8Array(half.buffer);
  }
  return encodeTensor({ dims: init.dims, dataType: init.dataType, name: init.name, rawData: raw });
}

/**
 * The graph with the named initializers replaced by `fused` (TensorProto bytes). Everything else is copied byte for
 * byte; an external initializer becomes an inline one. `fused` is drained as it is copied (each entry deleted once
 * in the output, whose pages are written only then), so the fused weights are not alive twice over.
 */
export function replaceInitializers(graph: Uint8Array, fused: Map<string, Uint8Array>): Uint8Array {
  const pieces: (Uint8Array | { name: string; header: Uint8Array; bytes: number })[] = [];
  let total = 0;
  let graphHeader: Uint8Array | null = null;
  let graphAt = -1;
  let graphLen = 0;
  for (const top of fieldSpans(graph)) {
    if (top.field !== FIELD.model.graph) {
      pieces.push(graph.subarray(top.start, top.end));
      total += top.end - top.start;
      continue;
    }
    graphAt = pieces.length;
    pieces.push(new Uint8Array(0)); // the graph field's tag and length, known once its fields are
    for (const f of fieldSpans(graph, top.payload, top.end)) {
      const name = f.field === FIELD.graph.initializer ? initializerName(graph.subarray(f.payload, f.end)) : null;
      const replacement = name !== null ? fused.get(name) : undefined;
      if (replacement) {
        const header = fieldHeader(FIELD.graph.initializer, replacement.length);
        pieces.push({ name: name!, header, bytes: replacement.length });
        graphLen += header.length + replacement.length;
      } else {
        pieces.push(graph.subarray(f.start, f.end));
        graphLen += f.end - f.start;
      }
    }
    graphHeader = fieldHeader(FIELD.model.graph, graphLen);
    pieces[graphAt] = graphHeader;
    total += graphHeader.length + graphLen;
  }
  const out = Buffer.allocUnsafe(total);
  let at = 0;
  for (const p of pieces) {
    if (p instanceof Uint8Array) {
      out.set(p, at);
      at += p.length;
      continue;
    }
    out.set(p.header, at);
    at += p.header.length;
    out.set(fused.get(p.name)!, at);
    at += p.bytes;
    fused.delete(p.name);
  }
  return out;
}

/** Only the name field (8), without decoding the tensor's data. */
function initializerName(tensor: Uint8Array): string | null {
  for (const f of fieldSpans(tensor)) if (f.field === 8) return Buffer.from(tensor.subarray(f.payload, f.end)).toString("utf8");
  return null;
}
