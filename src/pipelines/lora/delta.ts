/**
 * The LoRA update `W += s · up·down` on a weight in the layout its ONNX op stores it (s = scale · alpha / rank),
 * in float32. `down` is [rank, in(, kh, kw)], `up` is [out, rank(, 1, 1)]: linear LoRAs, LoRAs on 1x1 convs and
 * LoCon's 3x3 convs are the same product once the kernel is flattened into the input dimension.
 */

export interface DeltaShapes {
  weight: number[];
  layout: "in_out" | "out_in";
  down: number[];
  up: number[];
}

/** Why `down`/`up` do not fit the weight, or null when they do. */
export function deltaMismatch(s: DeltaShapes): string | null {
  const rank = s.down[0] ?? 0;
  const downCols = s.down.slice(1).reduce((n, d) => n * d, 1);
  const out = s.up[0] ?? 0;
  const upCols = s.up.slice(1).reduce((n, d) => n * d, 1);
  const shapes = `LoRA down [${s.down.join(", ")}], up [${s.up.join(", ")}]; model weight [${s.weight.join(", ")}]`;
  if (!rank || upCols !== rank || s.up.length < 2 || s.down.length < 2) return `down/up ranks disagree (${shapes})`;
  if (s.up.length === 4 && (s.up[2] !== 1 || s.up[3] !== 1)) return `an up kernel bigger than 1x1 is not a LoRA (${shapes})`;
  const [wOut, wCols] = s.layout === "out_in" ? [s.weight[0], s.weight.slice(1).reduce((n, d) => n * d, 1)] : [s.weight[1], s.weight[0]];
  if (s.layout === "in_out" && s.weight.length !== 2) return `weight is not a matrix (${shapes})`;
  if (wOut !== out || wCols !== downCols) return `shapes do not fit: ${shapes}`;
  return null;
}

/** Adds `s · up·down` to `w` in place (shapes checked by {@link deltaMismatch}). */
export function addDelta(w: Float32Array, shapes: DeltaShapes, down: Float32Array, up: Float32Array, s: number): void {
  const rank = shapes.down[0]!;
  const cols = down.length / rank;
  const out = up.length / rank;
  if (shapes.layout === "out_in") {
    // W[o, c] += s Σk up[o, k] down[k, c]: each row of W takes rank scaled rows of down.
    for (let o = 0; o < out; o++) {
      const row = o * cols;
      for (let k = 0; k < rank; k++) {
        const a = s * up[o * rank + k]!;
        if (a === 0) continue;
        const d = k * cols;
        for (let c = 0; c < cols; c++) w[row + c] += a * down[d + c]!;
      }
    }
    return;
  }
  // MatMul stores W transposed, [in, out]: W[i, o] += s Σk down[k, i] up[o, k]; up is transposed once for rows.
  const upT = new Float32Array(rank * out);
  for (let o = 0; o < out; o++) for (let k = 0; k < rank; k++) upT[k * out + o] = up[o * rank + k]!;
  for (let i = 0; i < cols; i++) {
    const row = i * out;
    for (let k = 0; k < rank; k++) {
      const a = s * down[k * cols + i]!;
      if (a === 0) continue;
      const u = k * out;
      for (let o = 0; o < out; o++) w[row + o] += a * upT[u + o]!;
    }
  }
}
