import {
  ATTR,
  DTYPE,
  FIELD,
  concatBytes,
  decodeNode,
  decodeOpset,
  decodeTensorHeader,
  encodeField,
  encodeNode,
  fieldSpans,
  toNumber,
  type FieldSpan,
  type NodeMsg,
} from "./proto-wire.js";

const MODEL_GRAPH = FIELD.model.graph;
const MODEL_OPSET = FIELD.model.opsetImport;
const GRAPH_NODE = FIELD.graph.node;
const GRAPH_INITIALIZER = FIELD.graph.initializer;
const GRAPH_OUTPUT = FIELD.graph.output;

/** Elementwise ops allowed between the score MatMul and the Softmax (scaling, masks without a row axis, casts). */
const SCORE_BINARY = new Set(["Mul", "Div", "Add", "Sub"]);

export interface SlicedAttention {
  /** The rewritten model (graph only; external weights stay where the original points). */
  bytes: Uint8Array;
  /** Attention blocks rewritten. */
  sliced: number;
}

interface Located {
  node: NodeMsg;
  span: FieldSpan;
  index: number;
}

/** One attention found: Q·K → elementwise… → Softmax(last axis) → Cast… → ·V. */
interface AttentionMatch {
  scores: Located;
  between: Located[];
  softmax: Located;
  after: Located[];
  values: Located;
}

/**
 * Splits every attention's query rows into `slices` chunks, so the score matrix (and its softmax) of only one
 * chunk is alive at a time: the same arithmetic per row, a `slices`-th of the memory. At 512² an SD UNet's
 * self-attention scores are 8 heads × 4096 × 4096 floats (512 MiB per image, twice with the softmax), growing with
 * the square of the pixel count; diffusers calls this attention slicing. Rows are cut with Slice bounds computed
 * from the query's shape, so exports with dynamic sizes keep them. Returns null when the graph has no attention
 * of this shape (nothing to gain) or uses an opset without these ops' semantics.
 */
export function sliceAttention(model: Uint8Array, slices: number): SlicedAttention | null {
  if (!Number.isInteger(slices) || slices < 2) return null;
  const top = fieldSpans(model);
  const opset = top
    .filter((s) => s.field === MODEL_OPSET)
    .map((s) => decodeOpset(model, s))
    .find((o) => o.domain === "" || o.domain === "ai.onnx");
  if (!opset || opset.version < 11) return null;
  const graphSpan = top.find((s) => s.field === MODEL_GRAPH);
  if (!graphSpan) return null;
  const graphFields = fieldSpans(model, graphSpan.payload, graphSpan.end);
  const nodes: Located[] = [];
  graphFields.forEach((span, index) => {
    if (span.field === GRAPH_NODE) nodes.push({ node: decodeNode(model, span), span, index });
  });
  const graphOutputs = new Set(graphFields.filter((s) => s.field === GRAPH_OUTPUT).map((s) => valueInfoName(model, s)));
  const rowless = rowlessConstants(model, graphFields, nodes);
  const matches = findAttention(nodes, graphOutputs, rowless, opset.version);
  if (!matches.length) return null;

  const removed = new Set<number>();
  const replacement = new Map<number, Uint8Array[]>();
  matches.forEach((m, k) => {
    for (const l of [m.scores, ...m.between, m.softmax, ...m.after, m.values]) removed.add(l.index);
    replacement.set(m.values.index, slicedNodes(m, slices, `omni_attention_slice_${k}`).map((n) => encodeField(GRAPH_NODE, encodeNode(n))));
  });
  const graphParts: Uint8Array[] = [];
  graphFields.forEach((span, index) => {
    const sub = replacement.get(index);
    if (sub) graphParts.push(...sub);
    else if (!removed.has(index)) graphParts.push(model.subarray(span.start, span.end));
  });
  const parts: Uint8Array[] = [];
  for (const span of top) parts.push(span === graphSpan ? encodeField(MODEL_GRAPH, concatBytes(graphParts)) : model.subarray(span.start, span.end));
  return { bytes: concatBytes(parts), sliced: matches.length };
}

function valueInfoName(model: Uint8Array, span: FieldSpan): string {
  // ValueInfoProto.name is field 1, a string.
  const name = fieldSpans(model, span.payload, span.end).find((s) => s.field === 1);
  return name ? new TextDecoder().decode(model.subarray(name.payload, name.end)) : "";
}

/** Names of constants (initializers and Constant nodes) with no row axis: scalars, vectors, or size 1 at axis -2. */
function rowlessConstants(model: Uint8Array, graphFields: FieldSpan[], nodes: Located[]): Set<string> {
  const ok = (dims: number[]) => dims.length < 2 || dims[dims.length - 2] === 1;
  const names = new Set<string>();
  for (const span of graphFields) {
    if (span.field !== GRAPH_INITIALIZER) continue;
    const t = decodeTensorHeader(model, span);
    if (t.name && ok((t.dims ?? []).map(toNumber))) names.add(t.name);
  }
  for (const { node } of nodes) {
    if (node.opType !== "Constant" || (node.domain ?? "") !== "") continue;
    const value = node.attribute?.find((a) => a.name === "value" && a.type === ATTR.TENSOR);
    const scalar = node.attribute?.some((a) => a.name === "value_float" || a.name === "value_int");
    if ((value?.t && ok((value.t.dims ?? []).map(toNumber))) || scalar) names.add(node.output[0]!);
  }
  return names;
}

function findAttention(nodes: Located[], graphOutputs: Set<string>, rowless: Set<string>, opset: number): AttentionMatch[] {
  const producer = new Map<string, Located>();
  const consumers = new Map<string, Located[]>();
  for (const l of nodes) {
    for (const o of l.node.output) producer.set(o, l);
    for (const i of l.node.input) consumers.set(i, [...(consumers.get(i) ?? []), l]);
  }
  /** The one node reading `name`, when nothing else (a graph output included) reads it. */
  const soleConsumer = (name: string): Located | null => {
    const c = consumers.get(name) ?? [];
    return c.length === 1 && !graphOutputs.has(name) ? c[0]! : null;
  };
  const std = (l: Located) => (l.node.domain ?? "") === "";
  const matches: AttentionMatch[] = [];
  for (const softmax of nodes) {
    if (softmax.node.opType !== "Softmax" || !std(softmax)) continue;
    const axis = softmax.node.attribute?.find((a) => a.name === "axis");
    // Before opset 13 an absent axis means 1 (not the last axis).
    if (axis ? toNumber(axis.i) !== -1 : opset < 13) continue;
    const between: Located[] = [];
    let cur = producer.get(softmax.node.input[0]!);
    while (cur && std(cur) && soleConsumer(cur.node.output[0]!) && cur.node.opType !== "MatMul") {
      const n = cur.node;
      const unary = n.opType === "Cast";
      const binary = SCORE_BINARY.has(n.opType) && n.input.length === 2 && rowless.has(n.input[1]!);
      if (!unary && !binary) break;
      between.unshift(cur);
      cur = producer.get(n.input[0]!);
    }
    if (!cur || cur.node.opType !== "MatMul" || !std(cur) || !soleConsumer(cur.node.output[0]!)) continue;
    const scores = cur;
    const after: Located[] = [];
    let next = soleConsumer(softmax.node.output[0]!);
    while (next && std(next) && next.node.opType === "Cast" && soleConsumer(next.node.output[0]!)) {
      after.push(next);
      next = soleConsumer(next.node.output[0]!);
    }
    const lastOut = (after.at(-1) ?? softmax).node.output[0]!;
    if (!next || next.node.opType !== "MatMul" || !std(next) || next.node.input[0] !== lastOut) continue;
    matches.push({ scores, between, softmax, after, values: next });
  }
  return matches;
}

const int64Const = (output: string, values: number[]): NodeMsg => ({
  input: [],
  output: [output],
  name: output,
  opType: "Constant",
  domain: "",
  attribute: [{ name: "value", type: ATTR.TENSOR, t: { dims: [values.length], dataType: DTYPE.INT64, int64Data: values } }],
});

/** The nodes that replace one attention: row bounds from the query's shape, then one chain per chunk, then Concat. */
function slicedNodes(m: AttentionMatch, slices: number, p: string): NodeMsg[] {
  const q = m.scores.node.input[0]!;
  const out: NodeMsg[] = [
    int64Const(`${p}/axis`, [-2]),
    int64Const(`${p}/slices`, [slices]),
    int64Const(`${p}/slices_minus_1`, [slices - 1]),
    { input: [q], output: [`${p}/q_shape`], name: `${p}/q_shape`, opType: "Shape", domain: "" },
    {
      input: [`${p}/q_shape`, `${p}/axis`],
      output: [`${p}/rows`],
      name: `${p}/rows`,
      opType: "Gather",
      domain: "",
      attribute: [{ name: "axis", type: ATTR.INT, i: 0 }],
    },
    { input: [`${p}/rows`, `${p}/slices_minus_1`], output: [`${p}/rows_up`], name: `${p}/rows_up`, opType: "Add", domain: "" },
    // Integer division rounds down, so chunk = ceil(rows / slices); Slice clamps the last chunk's end.
    { input: [`${p}/rows_up`, `${p}/slices`], output: [`${p}/chunk`], name: `${p}/chunk`, opType: "Div", domain: "" },
  ];
  const chunkOutputs: string[] = [];
  for (let i = 0; i < slices; i++) {
    const c = `${p}/${i}`;
    out.push(
      int64Const(`${c}/i`, [i]),
      int64Const(`${c}/i_next`, [i + 1]),
      { input: [`${p}/chunk`, `${c}/i`], output: [`${c}/start`], name: `${c}/start`, opType: "Mul", domain: "" },
      { input: [`${p}/chunk`, `${c}/i_next`], output: [`${c}/end`], name: `${c}/end`, opType: "Mul", domain: "" },
      { input: [q, `${c}/start`, `${c}/end`, `${p}/axis`], output: [`${c}/q`], name: `${c}/q`, opType: "Slice", domain: "" },
    );
    let prev = `${c}/q`;
    const chain = [m.scores, ...m.between, m.softmax, ...m.after, m.values];
    chain.forEach((l, j) => {
      const o = j === chain.length - 1 ? `${c}/out` : `${c}/${j}`;
      out.push({ ...l.node, input: [prev, ...l.node.input.slice(1)], output: [o], name: `${c}/${l.node.name || l.node.opType}` });
      prev = o;
    });
    chunkOutputs.push(prev);
  }
  out.push({
    input: chunkOutputs,
    output: [m.values.node.output[0]!],
    name: `${p}/concat`,
    opType: "Concat",
    domain: "",
    attribute: [{ name: "axis", type: ATTR.INT, i: -2 }],
  });
  return out;
}
