import { floatTensor, numericTensor, type OnnxModel, type ort } from "./onnx-model.js";
import { guidanceScaleEmbedding } from "./tensor-ops.js";

/** One UNet row: a sample's scaled latents at its timestep, with the text context it is conditioned on. */
export interface UnetRow {
  input: Float32Array;
  t: number;
  ctx: Float32Array;
  /** The request's guidance scale (LCM exports take it as `timestep_cond`). */
  w: number;
  /** Added inputs by name (SDXL's `text_embeds`, `time_ids`), one vector per row. */
  added?: Record<string, Float32Array>;
}

/**
 * The UNet's inputs for `rows`, in the dtypes the export declares (fp16 exports are converted here; latents
 * stay float32 outside): `sample` [n, c, h, w], `timestep` (one per row, or one scalar for exports whose
 * timestep is a scalar: the caller then passes rows of one timestep), `encoder_hidden_states` [n, tokens, dim],
 * and `timestep_cond` where the export has it.
 */
export function unetFeeds(unet: OnnxModel, rows: UnetRow[], latentShape: readonly [number, number, number], textTokens: number, perRowTimestep: boolean): Record<string, ort.Tensor> {
  const [c, h, w] = latentShape;
  const size = c * h * w;
  const n = rows.length;
  const ctxLen = rows[0]!.ctx.length;
  const sample = new Float32Array(n * size);
  const ctx = new Float32Array(n * ctxLen);
  rows.forEach((r, i) => {
    sample.set(r.input, i * size);
    ctx.set(r.ctx, i * ctxLen);
  });
  const tsInput = unet.input("timestep")!;
  const feeds: Record<string, ort.Tensor> = {
    sample: floatTensor(unet.input("sample")!.type, sample, [n, c, h, w]),
    timestep: numericTensor(tsInput.type, perRowTimestep ? rows.map((r) => r.t) : [rows[0]!.t], perRowTimestep ? [n] : tsInput.shape.length ? [1] : []),
    encoder_hidden_states: floatTensor(unet.input("encoder_hidden_states")!.type, ctx, [n, textTokens, ctxLen / textTokens]),
  };
  const tc = unet.input("timestep_cond");
  if (tc) {
    const dim = Number(tc.shape[1]) || 256;
    const emb = new Float32Array(n * dim);
    rows.forEach((r, i) => emb.set(guidanceScaleEmbedding(r.w - 1, dim), i * dim));
    feeds.timestep_cond = floatTensor(tc.type, emb, [n, dim]);
  }
  for (const [name, first] of Object.entries(rows[0]!.added ?? {})) {
    const data = new Float32Array(n * first.length);
    rows.forEach((r, i) => data.set(r.added![name]!, i * first.length));
    feeds[name] = floatTensor(unet.input(name)!.type, data, [n, first.length]);
  }
  return feeds;
}
