import * as ort from "onnxruntime-node";
import { smallModelBytes } from "../onnx-graph/small-graph.js";
import { addDelta, type DeltaShapes } from "./delta.js";

/**
 * `W + s · A·B` on onnxruntime: the LoRA product is a real matrix multiplication (SD 1.5's transformer layers at
 * rank 32: ~8.5 GFLOP), which MLAS runs on every core in SIMD, against ~1 GFLOP/s for the same loop in
 * JavaScript (bench/lora-fuse.ts). The graph is three nodes with dynamic shapes, built here once per process.
 */

/** The three-node graph, written by the small-graph writer the device-side graphs use. */
function modelBytes(): Uint8Array {
  const value = (name: string, dims: string[]) => ({ name, elem: "float32" as const, dims });
  return smallModelBytes({
    name: "lora_delta",
    nodes: [
      { input: ["A", "B"], output: ["P"], opType: "MatMul", name: "product" },
      { input: ["P", "s"], output: ["D"], opType: "Mul", name: "scale" },
      { input: ["W", "D"], output: ["out"], opType: "Add", name: "fuse" },
    ],
    inputs: [value("W", ["m", "n"]), value("A", ["m", "k"]), value("B", ["k", "n"]), value("s", [])],
    outputs: [value("out", ["m", "n"])],
  });
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
