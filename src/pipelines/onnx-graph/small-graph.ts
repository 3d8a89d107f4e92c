import protobuf from "protobufjs";
import { concatBytes, encodeField, encodeNode, type NodeMsg } from "./proto-wire.js";

/** ONNX element types the small graphs use (TensorProto.DataType). */
export const ELEM = { float32: 1, float16: 10 } as const;
export type ElemType = keyof typeof ELEM;

/** A graph input or output: a tensor of `elem` with fixed (number) or symbolic (string) dims. */
export interface ValueSpec {
  name: string;
  elem: ElemType;
  dims: (number | string)[];
}

/** A whole graph: nodes in topological order between its inputs and outputs. */
export interface SmallGraph {
  name: string;
  inputs: ValueSpec[];
  outputs: ValueSpec[];
  nodes: NodeMsg[];
}

const w = () => protobuf.Writer.create();

function valueInfo(v: ValueSpec): Uint8Array {
  const dims = v.dims.map((d) =>
    typeof d === "number"
      ? w().uint32((1 << 3) | 0).int64(d).finish() // Dimension.dim_value
      : w().uint32((2 << 3) | 2).string(d).finish(), // Dimension.dim_param
  );
  const shape = concatBytes(dims.map((d) => encodeField(1, d))); // TensorShapeProto.dim
  const tensor = concatBytes([w().uint32((1 << 3) | 0).int32(ELEM[v.elem]).finish(), encodeField(2, shape)]); // elem_type, shape
  const type = encodeField(1, tensor); // TypeProto.tensor_type
  return concatBytes([w().uint32((1 << 3) | 2).string(v.name).finish(), encodeField(2, type)]); // ValueInfoProto name, type
}

/**
 * The bytes of an ONNX model (opset 17) holding `g`: the small device-side graphs (the sampler's step, the batch's
 * gathers) that keep tensors on the GPU between UNet calls. Written with onnx.proto's field numbers.
 */
export function smallModelBytes(g: SmallGraph): Uint8Array {
  const graph = concatBytes([
    ...g.nodes.map((n) => encodeField(1, encodeNode(n))), // GraphProto.node
    w().uint32((2 << 3) | 2).string(g.name).finish(),
    ...g.inputs.map((v) => encodeField(11, valueInfo(v))),
    ...g.outputs.map((v) => encodeField(12, valueInfo(v))),
  ]);
  const opset = w().uint32((1 << 3) | 2).string("").uint32((2 << 3) | 0).int64(17).finish();
  return concatBytes([w().uint32((1 << 3) | 0).int64(8).finish(), encodeField(7, graph), encodeField(8, opset)]);
}
