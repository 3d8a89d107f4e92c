/**
 * FLOPs of one row of the tiny-shapes UNet, derived by hand from its architecture
 * (training/tiny-shapes/model.py, `UNet`), not from the ONNX graph.
 *
 * Counted: every Conv2d, Linear and the two attention matmuls (QKᵀ and softmax·V) at 2 FLOPs per
 * multiply-accumulate. Not counted: GroupNorm/LayerNorm, softmax, SiLU/GELU, residual adds, upsampling,
 * pixel (un)shuffle, the sinusoidal embedding — elementwise work, memory-bound and small next to the
 * convolutions. FLOPs scale linearly with the batch: a call with B rows costs B × this.
 * training/tiny-shapes/sample_torch.py counts the same terms with forward hooks on the PyTorch model; the
 * pipeline bench prints both so a change in model.py that is not mirrored here shows up.
 */

export interface TinyUnetShape {
  /** Image height and width in pixels (the UNet folds 2×2 pixels into channels). */
  height: number;
  width: number;
  /** block_out_channels of unet/config.json. */
  channels: [number, number, number];
  /** Text hidden size (cross_attention_dim). */
  ctxDim: number;
  /** Text tokens the UNet attends to. */
  ctxTokens: number;
}

export interface FlopCount {
  /** Conv2d + Linear + attention matmuls, 2 FLOPs per MAC. */
  total: number;
  /** Share of `total` per part, for the printout. */
  parts: Record<string, number>;
}

/** MAC-based FLOPs of one UNet row. */
export function tinyUnetFlops(s: TinyUnetShape): FlopCount {
  const [c1, c2, c3] = s.channels;
  const temb = c1 * 4;
  const r16 = (s.height / 2) * (s.width / 2); // positions after the 2×2 fold
  const r8 = r16 / 4;
  const r4 = r8 / 4;
  const L = s.ctxTokens;
  const parts: Record<string, number> = { conv: 0, linear: 0, attention: 0 };
  const conv = (cin: number, cout: number, k: number, positions: number) => (parts.conv! += 2 * cin * cout * k * k * positions);
  const linear = (din: number, dout: number, rows: number) => (parts.linear! += 2 * din * dout * rows);
  const matmul = (n: number, m: number, d: number) => (parts.attention! += 2 * 2 * n * m * d); // QKᵀ and W·V

  const resBlock = (cin: number, cout: number, p: number) => {
    conv(cin, cout, 3, p);
    linear(temb, cout, 1);
    conv(cout, cout, 3, p);
    if (cin !== cout) conv(cin, cout, 1, p);
  };
  const spatialTransformer = (d: number, n: number) => {
    linear(d, 3 * d, n); // self q, k, v
    matmul(n, n, d);
    linear(d, d, n); // self out
    linear(d, d, n); // cross q
    linear(s.ctxDim, 2 * d, L); // cross k, v on the text states
    matmul(n, L, d);
    linear(d, d, n); // cross out
    linear(d, 4 * d, n); // feed-forward
    linear(4 * d, d, n);
  };

  linear(c1, temb, 1); // time MLP
  linear(temb, temb, 1);
  linear(s.ctxDim, temb, 1); // pooled-text MLP
  linear(temb, temb, 1);
  conv(12, c1, 3, r16); // conv_in
  resBlock(c1, c1, r16); // d1a
  conv(c1, c1, 3, r8); // down1 (stride 2: output positions)
  resBlock(c1, c2, r8); // d2a
  spatialTransformer(c2, r8); // d2t
  conv(c2, c2, 3, r4); // down2
  resBlock(c2, c3, r4); // m1
  spatialTransformer(c3, r4); // mt
  resBlock(c3, c3, r4); // m2
  resBlock(c3 + c2, c2, r8); // u2a
  spatialTransformer(c2, r8); // u2t
  resBlock(c2 + c1, c1, r16); // u1a
  conv(c1, 12, 3, r16); // conv_out
  return { total: parts.conv! + parts.linear! + parts.attention!, parts };
}

/** The UNet shape from the model folder's configs (unet/config.json, text_encoder/config.json). */
export function tinyUnetShape(unetConfig: Record<string, any>, textConfig: Record<string, any>, height: number, width: number): TinyUnetShape {
  const ch = unetConfig.block_out_channels as number[] | undefined;
  if (!ch || ch.length !== 3) throw new Error(`unet/config.json block_out_channels must have 3 entries for the tiny-shapes UNet, got ${JSON.stringify(ch)}`);
  return {
    height,
    width,
    channels: [ch[0]!, ch[1]!, ch[2]!],
    ctxDim: unetConfig.cross_attention_dim ?? textConfig.hidden_size,
    ctxTokens: textConfig.max_position_embeddings,
  };
}
