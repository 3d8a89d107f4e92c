import * as ort from "onnxruntime-node";
import protobuf from "protobufjs";
import { encodeNode } from "../onnx-graph/proto-wire.js";
import { addDelta, type DeltaShapes } from "./delta.js";

/**
 * `W + s · A·B` on onnxruntime: the LoRA product is a real matrix multiplication (SD 1.5's transformer layers at
 * rank 32: ~8.5 GFLOP), which MLAS runs on every core in SIMD, against ~1 GFLOP/s for the same loop in
 * JavaScript (bench/lora-fuse.ts). The graph is three nodes with dynamic shapes, built here once per process.
 */

const root = protobuf.Root.fromJSON({
  nested: {
    Dim: { fields: { dimParam: { type: "string", id: 2 } } },
    Shape: { fields: { dim: { rule: "repeated", type: "Dim", id: 1 } } },
    TensorType: { fields: { elemType: { type: "int32", id: 1 }, shape: { type: "Shape", id: 2 } } },
    Type: { fields: { tensorType: { type: "TensorType", id: 1 } } },
    ValueInfo: { fields: { name: { type: "string", id: 1 }, type: { type: "Type", id: 2 } } },
    Graph: {
      fields: {
        node: { rule: "repeated", type: "bytes", id: 1 },
        name: { type: "string", id: 2 },
        input: { rule: "repeated", type: "ValueInfo", id: 11 },
        output: { rule: "repeated", type: "ValueInfo", id: 12 },
      },
    },
    Opset: { fields: { domain: { type: "string", id: 1 }, version: { type: "int64", id: 2 } } },
    Model: { fields: { irVersion: { type: "int64", id: 1 }, graph: { type: "Graph", id: 7 }, opsetImport: { rule: "repeated", type: "Opset", id: 8 } } },
  },
});

/** The graph's node messages are embedded as raw bytes: field 1 of GraphProto, length-delimited, as NodeProto is. */
function modelBytes(): Uint8Array {
  const value = (name: string, dims: string[]) => ({ name, type: { tensorType: { elemType: 1, shape: { dim: dims.map((d) => ({ dimParam: d })) } } } });
  const Model = root.lookupType("Model");
  return Model.encode(
    Model.fromObject({
      irVersion: 8,
      opsetImport: [{ domain: "", version: 17 }],
      graph: {
        name: "lora_delta",
        node: [
          encodeNode({ input: ["A", "B"], output: ["P"], opType: "MatMul", name: "product" }),
          encodeNode({ input: ["P", "s"], output: ["D"], opType: "Mul", name: "scale" }),
          encodeNode({ input: ["W", "D"], output: ["out"], opType: "Add", name: "fuse" }),
        ],
        input: [value("W", ["m", "n"]), value("A", ["m", "k"]), value("B", ["k", "n"]), value("s", [])],
        output: [value("out", ["m", "n"])],
      },
    }),
  ).finish();
}

let session: Promise<ort.InferenceSession> | null = null;

/** Products below this many multiply-adds stay in JavaScript: a session run costs more than they do. */
const MIN_SESSION_FLOPS = 1 << 20;

/**
 * `w` with `s · up·down` added, in the weight's layout (MatMul's [in, out] takes downᵀ·upᵀ). Returns a new
 * array when onnxruntime computed it, `w` itself (updated in place) for small products.
 */
export async function fusedWeight(w: Float32Array, shapes: DeltaShapes, down: Float32Array, up: Float32Array, s: number): Promise<Float32Array> {
  const rank = shapes.down[0]!;
  const cols = down.length / rank;
  const out = up.length / rank;
  if (cols * out * rank < MIN_SESSION_FLOPS) {
    addDelta(w, shapes, down, up, s);
    return w;
  }
  session ??= ort.InferenceSession.create(modelBytes(), { graphOptimizationLevel: "all", interOpNumThreads: 1 });
  const sess = await session;
  let a: ort.Tensor;
  let b: ort.Tensor;
  let m: number;
  let n: number;
  if (shapes.layout === "out_in") {
    [a, b, m, n] = [new ort.Tensor("float32", up, [out, rank]), new ort.Tensor("float32", down, [rank, cols]), out, cols];
  } else {
    [a, b, m, n] = [new ort.Tensor("float32", transpose(down, rank, cols), [cols, rank]), new ort.Tensor("float32", transpose(up, out, rank), [rank, out]), cols, out];
  }
  const res = await sess.run({ W: new ort.Tensor("float32", w, [m, n]), A: a, B: b, s: new ort.Tensor("float32", Float32Array.of(s), []) });
  return res.out!.data as Float32Array;
}

function transpose(x: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(x.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = x[r * cols + c]!;
  return t;
}
