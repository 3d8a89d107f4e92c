/**
 * What a full-size SDXL run would need (bench/realscale.ts `--kind sdxl`): the full-size fixture maker
 * (training/fixtures/fullsize/) builds SD 1.5 / 2.1 only, and an SDXL UNet (2.6 B parameters) does not fit its
 * build on a 24 GiB machine shared with other work (torch holds the weights twice while the export is re-saved).
 * Computed with the engine's own memory estimate on SDXL's real configs, so the figures are the ones a worker
 * would refuse or admit requests by.
 */
import { estimateWorkerBytes } from "../../src/core/memory-estimate.js";
import { describeOnnxModel } from "../../src/pipelines/model-limits.js";
import type { OnnxDType } from "../../src/pipelines/onnx-model.js";

/** stabilityai/stable-diffusion-xl-base-1.0 unet/config.json, the fields the estimate reads. */
export const SDXL_UNET_CONFIG = {
  sample_size: 128,
  in_channels: 4,
  block_out_channels: [320, 640, 1280],
  attention_head_dim: [5, 10, 20],
  transformer_layers_per_block: [1, 2, 10],
  down_block_types: ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
  cross_attention_dim: 2048,
};
/** Parameters of the real components (diffusers' counts). */
export const SDXL_PARAMS = { unet: 2_567_463_684, textEncoder: 123_060_480, textEncoder2: 694_659_840, vaeDecoder: 49_490_199 };

export interface SdxlPlanRow {
  dtype: "float32" | "float16";
  weightsGiB: number;
  /** Estimated worker peak for one image at `size`², guided (2 UNet rows) and Turbo-style (1 row). */
  guidedPeakGiB: number;
  turboPeakGiB: number;
  unetActivationsPerRowGiB: number;
  /** RAM the full-size maker would need: the UNet's float32 weights twice (build + re-save), plus the rest once. */
  buildRamGiB: number;
  diskGiB: number;
}

const GiB = 1024 ** 3;

export function sdxlPlan(size: number): SdxlPlanRow[] {
  return (["float32", "float16"] as const).map((dtype) => {
    const bytes = dtype === "float32" ? 4 : 2;
    const params = SDXL_PARAMS.unet + SDXL_PARAMS.textEncoder + SDXL_PARAMS.textEncoder2 + SDXL_PARAMS.vaeDecoder;
    const io = (type: OnnxDType) => ({ name: "sample", type, shape: ["batch", 4, "height", "width"] });
    const limits = describeOnnxModel({
      unetConfig: { ...SDXL_UNET_CONFIG, sample_size: size / 8 },
      schedulerConfig: { _class_name: "EulerDiscreteScheduler" },
      vaeScale: 8,
      latentChannels: 4,
      sample: io(dtype),
      encoderHiddenStates: { name: "encoder_hidden_states", type: dtype, shape: ["batch", 77, 2048] },
      textTokens: 77,
      textDim: 2048,
      sizeMultiple: 64,
      weightBytes: params * bytes,
      vaeConfig: { block_out_channels: [128, 256, 512, 512] },
    });
    const guided = estimateWorkerBytes(limits as Parameters<typeof estimateWorkerBytes>[0], size, size, 2, 1);
    const turbo = estimateWorkerBytes(limits as Parameters<typeof estimateWorkerBytes>[0], size, size, 1, 1);
    return {
      dtype,
      weightsGiB: (params * bytes) / GiB,
      guidedPeakGiB: guided.total / GiB,
      turboPeakGiB: turbo.total / GiB,
      unetActivationsPerRowGiB: guided.unet / 2 / GiB,
      buildRamGiB: (2 * SDXL_PARAMS.unet * 4 + (params - SDXL_PARAMS.unet) * 4) / GiB,
      diskGiB: (params * bytes + SDXL_PARAMS.unet * 4) / GiB,
    };
  });
}
