/**
 * A tiny VAE encoder written as an ONNX file without Python (no torch/onnx here): the graph is
 * AveragePool 8×8 → 1×1 Conv to 8 channels, i.e. diffusers' `latent_parameters` layout (4 mean channels, then
 * 4 log-variance channels). The ONNX protobuf messages are encoded with protobufjs from the few fields of
 * onnx.proto they need (field numbers as in onnx/onnx.proto). Its output is easy to compute by hand, so a test
 * can check that the pipeline feeds it the image and takes the mean half times the scaling factor.
 */
import protobuf from "protobufjs";

/** Mean-channel weights: latent channel c = Σ_rgb MEAN_W[c][rgb] · pooled[rgb]. */
export const MEAN_W = [
  [0.6, 0.2, -0.3],
  [-0.4, 0.5, 0.1],
  [0.2, -0.6, 0.4],
  [0.3, 0.3, 0.3],
];
/** Log-variance channels: weight 0, bias −5 (so a sampling encoder would be close to its mean anyway). */
const LOGVAR_BIAS = -5;

const schema = {
  nested: {
    onnx: {
      nested: {
        ModelProto: { fields: { ir_version: { type: "int64", id: 1 }, producer_name: { type: "string", id: 2 }, graph: { type: "GraphProto", id: 7 }, opset_import: { rule: "repeated", type: "OperatorSetIdProto", id: 8 } } },
        OperatorSetIdProto: { fields: { domain: { type: "string", id: 1 }, version: { type: "int64", id: 2 } } },
        GraphProto: {
          fields: {
            node: { rule: "repeated", type: "NodeProto", id: 1 },
            name: { type: "string", id: 2 },
            initializer: { rule: "repeated", type: "TensorProto", id: 5 },
            input: { rule: "repeated", type: "ValueInfoProto", id: 11 },
            output: { rule: "repeated", type: "ValueInfoProto", id: 12 },
          },
        },
        NodeProto: {
          fields: {
            input: { rule: "repeated", type: "string", id: 1 },
            output: { rule: "repeated", type: "string", id: 2 },
            name: { type: "string", id: 3 },
            op_type: { type: "string", id: 4 },
            attribute: { rule: "repeated", type: "AttributeProto", id: 5 },
          },
        },
        AttributeProto: { fields: { name: { type: "string", id: 1 }, ints: { rule: "repeated", type: "int64", id: 8 }, type: { type: "int32", id: 20 } } },
        ValueInfoProto: { fields: { name: { type: "string", id: 1 }, type: { type: "TypeProto", id: 2 } } },
        TypeProto: { fields: { tensor_type: { type: "TensorTypeProto", id: 1 } } },
        TensorTypeProto: { fields: { elem_type: { type: "int32", id: 1 }, shape: { type: "TensorShapeProto", id: 2 } } },
        TensorShapeProto: { fields: { dim: { rule: "repeated", type: "Dimension", id: 1 } } },
        Dimension: { fields: { dim_value: { type: "int64", id: 1 }, dim_param: { type: "string", id: 2 } } },
        TensorProto: {
          fields: {
            dims: { rule: "repeated", type: "int64", id: 1 },
            data_type: { type: "int32", id: 2 },
            float_data: { rule: "repeated", type: "float", id: 4 },
            name: { type: "string", id: 8 },
          },
        },
      },
    },
  },
};

const FLOAT = 1;
const INTS = 7;
const dims = (...d: (number | string)[]) => ({ dim: d.map((v) => (typeof v === "number" ? { dim_value: v } : { dim_param: v })) });
const tensorType = (...d: (number | string)[]) => ({ tensor_type: { elem_type: FLOAT, shape: dims(...d) } });

/** The encoder's ONNX bytes: input `sample` [N, 3, H, W] → output `latent_parameters` [N, 8, H/8, W/8]. */
export function tinyVaeEncoderOnnx(): Uint8Array {
  const Model = protobuf.Root.fromJSON(schema).lookupType("onnx.ModelProto");
  const weight: number[] = [];
  for (let c = 0; c < 8; c++) for (let k = 0; k < 3; k++) weight.push(c < 4 ? MEAN_W[c]![k]! : 0);
  const bias = Array.from({ length: 8 }, (_, c) => (c < 4 ? 0 : LOGVAR_BIAS));
  const model = {
    ir_version: 8,
    producer_name: "omni-diffusion test",
    opset_import: [{ domain: "", version: 13 }],
    graph: {
      name: "tiny_vae_encoder",
      node: [
        { op_type: "AveragePool", name: "pool", input: ["sample"], output: ["pooled"], attribute: [{ name: "kernel_shape", type: INTS, ints: [8, 8] }, { name: "strides", type: INTS, ints: [8, 8] }] },
        { op_type: "Conv", name: "proj", input: ["pooled", "W", "B"], output: ["latent_parameters"] },
      ],
      initializer: [
        { name: "W", dims: [8, 3, 1, 1], data_type: FLOAT, float_data: weight },
        { name: "B", dims: [8], data_type: FLOAT, float_data: bias },
      ],
      input: [{ name: "sample", type: tensorType("batch", 3, "height", "width") }],
      output: [{ name: "latent_parameters", type: tensorType("batch", 8, "latent_height", "latent_width") }],
    },
  };
  const err = Model.verify(model);
  if (err) throw new TypeError(err);
  return Model.encode(Model.fromObject(model)).finish();
}

/** What the encoder computes for a CHW image in [-1, 1] (the mean half only), in float64. */
export function expectedMean(chw: Float32Array, width: number, height: number): Float64Array {
  const [w, h] = [width / 8, height / 8];
  const plane = width * height;
  const out = new Float64Array(4 * w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const pooled = [0, 0, 0];
      for (let k = 0; k < 3; k++) {
        for (let dy = 0; dy < 8; dy++) for (let dx = 0; dx < 8; dx++) pooled[k]! += chw[k * plane + (y * 8 + dy) * width + x * 8 + dx]! / 64;
      }
      for (let c = 0; c < 4; c++) out[c * w * h + y * w + x] = MEAN_W[c]!.reduce((a, wt, k) => a + wt * pooled[k]!, 0);
    }
  }
  return out;
}
