import protobuf from "protobufjs";

/**
 * Just enough of ONNX's protobuf schema (onnx.proto's field numbers) to read a model's nodes and write new ones.
 * Everything the rewrite does not touch is copied byte for byte, so fields this subset does not name (and fields
 * newer ONNX versions add) survive a rewrite unchanged.
 */
const root = protobuf.Root.fromJSON({
  nested: {
    onnx: {
      nested: {
        TensorProto: {
          fields: {
            dims: { rule: "repeated", type: "int64", id: 1 },
            dataType: { type: "int32", id: 2 },
            floatData: { rule: "repeated", type: "float", id: 4 },
            int64Data: { rule: "repeated", type: "int64", id: 7 },
            name: { type: "string", id: 8 },
            rawData: { type: "bytes", id: 9 },
            externalData: { rule: "repeated", type: "StringStringEntryProto", id: 13 },
            dataLocation: { type: "int32", id: 14 },
          },
        },
        StringStringEntryProto: {
          fields: { key: { type: "string", id: 1 }, value: { type: "string", id: 2 } },
        },
        AttributeProto: {
          fields: {
            name: { type: "string", id: 1 },
            f: { type: "float", id: 2 },
            i: { type: "int64", id: 3 },
            s: { type: "bytes", id: 4 },
            t: { type: "TensorProto", id: 5 },
            floats: { rule: "repeated", type: "float", id: 7 },
            ints: { rule: "repeated", type: "int64", id: 8 },
            type: { type: "int32", id: 20 },
          },
        },
        NodeProto: {
          fields: {
            input: { rule: "repeated", type: "string", id: 1 },
            output: { rule: "repeated", type: "string", id: 2 },
            name: { type: "string", id: 3 },
            opType: { type: "string", id: 4 },
            attribute: { rule: "repeated", type: "AttributeProto", id: 5 },
            domain: { type: "string", id: 7 },
          },
        },
        OperatorSetIdProto: {
          fields: { domain: { type: "string", id: 1 }, version: { type: "int64", id: 2 } },
        },
      },
    },
  },
});

const NodeType = root.lookupType("onnx.NodeProto");
const TensorType = root.lookupType("onnx.TensorProto");
const OpsetType = root.lookupType("onnx.OperatorSetIdProto");

/** Field numbers of onnx.proto messages that the rewrites walk as raw bytes (fieldSpans), not through the schema above. */
export const FIELD = {
  model: { graph: 7, opsetImport: 8 },
  graph: { node: 1, initializer: 5, output: 12 },
  tensor: { rawData: 9, externalData: 13, dataLocation: 14 },
} as const;

/** TensorProto.DataLocation.EXTERNAL. */
export const DATA_LOCATION_EXTERNAL = 1;

/** ONNX's AttributeProto.AttributeType values used here. */
export const ATTR = { FLOAT: 1, INT: 2, TENSOR: 4, INTS: 7 } as const;
/** ONNX's TensorProto.DataType values used here. */
export const DTYPE = { FLOAT: 1, INT64: 7, FLOAT16: 10, BFLOAT16: 16 } as const;

export interface TensorMsg {
  dims?: number[];
  dataType?: number;
  floatData?: number[];
  int64Data?: number[];
  name?: string;
  rawData?: Uint8Array;
  /** Where external data lies (`location`, `offset`, `length`) when `dataLocation` is {@link DATA_LOCATION_EXTERNAL}. */
  externalData?: { key: string; value: string }[];
  dataLocation?: number;
}
export interface AttributeMsg {
  name: string;
  type: number;
  f?: number;
  i?: number;
  t?: TensorMsg;
  ints?: number[];
}
export interface NodeMsg {
  input: string[];
  output: string[];
  name?: string;
  opType: string;
  attribute?: AttributeMsg[];
  domain?: string;
}

/** One field of a message as it lies in the bytes: its number and the byte range of the whole field (tag included). */
export interface FieldSpan {
  field: number;
  start: number;
  end: number;
  /** For length-delimited fields: where the payload starts. */
  payload: number;
}

/** The fields of one message, in order (`bytes` from `start` to `end`). */
export function fieldSpans(bytes: Uint8Array, start = 0, end = bytes.length): FieldSpan[] {
  const reader = protobuf.Reader.create(bytes.subarray(0, end));
  reader.pos = start;
  const spans: FieldSpan[] = [];
  while (reader.pos < end) {
    const at = reader.pos;
    const tag = reader.uint32();
    const wire = tag & 7;
    let payload = reader.pos;
    if (wire === 2) {
      const len = reader.uint32();
      payload = reader.pos;
      reader.skip(len);
    } else {
      reader.skipType(wire);
    }
    spans.push({ field: tag >>> 3, start: at, end: reader.pos, payload });
  }
  return spans;
}

export function decodeNode(bytes: Uint8Array, span: FieldSpan): NodeMsg {
  return NodeType.toObject(NodeType.decode(bytes.subarray(span.payload, span.end)), { arrays: true, longs: Number }) as NodeMsg;
}

export function decodeTensorHeader(bytes: Uint8Array, span: FieldSpan): TensorMsg {
  return decodeTensor(bytes.subarray(span.payload, span.end));
}

/** A TensorProto message's bytes as a {@link TensorMsg}. */
export function decodeTensor(bytes: Uint8Array): TensorMsg {
  return TensorType.toObject(TensorType.decode(bytes), { arrays: true, longs: Number }) as TensorMsg;
}

/** A {@link TensorMsg} as TensorProto message bytes. */
export function encodeTensor(t: TensorMsg): Uint8Array {
  return TensorType.encode(TensorType.fromObject(t)).finish();
}

export function decodeOpset(bytes: Uint8Array, span: FieldSpan): { domain: string; version: number } {
  const o = OpsetType.toObject(OpsetType.decode(bytes.subarray(span.payload, span.end)), { defaults: true, longs: Number }) as {
    domain: string;
    version: number;
  };
  return o;
}

/** A length-delimited field's tag and length: the bytes in front of a payload of `length` bytes written apart. */
export function fieldHeader(field: number, length: number): Uint8Array {
  return protobuf.Writer.create().uint32(((field << 3) | 2) >>> 0).uint32(length).finish();
}

/** A length-delimited field `field` holding `payload`. */
export function encodeField(field: number, payload: Uint8Array): Uint8Array {
  return protobuf.Writer.create().uint32(((field << 3) | 2) >>> 0).bytes(payload).finish();
}

export function encodeNode(node: NodeMsg): Uint8Array {
  return NodeType.encode(NodeType.fromObject(node)).finish();
}

/** int64 fields are decoded as numbers (`longs: Number`); an absent one reads 0. */
export function toNumber(v: number | undefined): number {
  return v ?? 0;
}

/** Joins byte chunks into one buffer. */
export function concatBytes(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
