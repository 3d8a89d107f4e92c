/**
 * Computes {@link ModelLimits} (what a loaded model can serve) from a model folder in the diffusers ONNX
 * layout and its loaded UNet. Pure: every input is passed in, so other layouts (latent SD exports, fp16,
 * fixed-shape exports) extend {@link ModelDescriptionInput} rather than this function's reading of files.
 */
import type { ModelLimits } from "../core/model-limits.js";
import type { ModelMemory } from "../core/memory-estimate.js";
import type { DeviceBufferLimits } from "../core/model-limits.js";
import { schedulersFor, unfitSchedulers } from "../schedulers/index.js";
import type { SchedulerConfig } from "../schedulers/types.js";
import type { OnnxIO } from "./onnx-model.js";

/**
 * Peak activations of a UNet relative to the bytes of its input and output tensors. An estimate: a UNet
 * keeps its skip connections and a few dozen intermediate tensors of the input's order of size alive at
 * once. Calibrated on tiny-shapes (32×32 pixel-space, attention at 8×8); `estimateRequestBytes` scales the
 * result quadratically above the native size, which covers attention's growth.
 */
export const ACTIVATION_FACTOR = 32;
/** Bytes per element of the UNet's activations: float16 exports compute in half precision. */
const elementBytes = (sample: OnnxIO | undefined): number => (sample?.type === "float16" ? 2 : 4);
/** Attention heads where unet/config.json does not say (SD 1.x: 8). */
const DEFAULT_HEADS = 8;
/** Native size when neither the config nor the export says (Stable Diffusion 1.x). */
const DEFAULT_NATIVE = 512;

/** What {@link describeOnnxModel} reads. */
export interface ModelDescriptionInput {
  /** unet/config.json (may be empty). */
  unetConfig: Record<string, unknown>;
  /** scheduler/scheduler_config.json. */
  schedulerConfig: SchedulerConfig;
  /** Pixels per latent cell (2^(VAE blocks - 1); 1 for pixel-space models). */
  vaeScale: number;
  /** Latent channels the UNet denoises. */
  latentChannels: number;
  /** The UNet's `sample` input ([B, C, H, W]; H, W numbers when the export is fixed-size). */
  sample: OnnxIO | undefined;
  /** The UNet's `encoder_hidden_states` input ([B, tokens, dim]). */
  encoderHiddenStates: OnnxIO | undefined;
  /** Text tokens and embedding width, when the export leaves them dynamic. */
  textTokens: number;
  textDim: number;
  /** Width/height multiple the pipeline requires. */
  sizeMultiple: number;
  /** Bytes of the weights the pipeline loads (pipelines/model-files.ts `onnxWeightBytes`). */
  weightBytes?: number;
  /** The VAE decoder's `latent_sample`: its dtype sizes the decode (SDXL's float16 exports keep a float32 VAE). Absent: the UNet's. */
  vaeSample?: OnnxIO;
  /** vae_decoder/config.json (may be empty): its first `block_out_channels` sizes the decode's largest buffers. */
  vaeConfig?: Record<string, unknown>;
  /** What this worker may use, bytes (core/memory-estimate.ts `memoryBudgetBytes`); 0 leaves it unchecked. */
  budgetBytes?: number;
  /** Query-row slices the loaded UNet's attention runs in (onnx-graph/attention-slicing.ts); 1: as exported. */
  attentionSlices?: number;
  /** Images the full VAE decodes per call (image-decoder.ts); absent or Infinity: the whole batch at once. */
  decodeImagesPerCall?: number;
  /** The GPU adapter's buffer limits (webgpu: pipelines/webgpu-limits.ts); absent on the CPU. */
  deviceLimits?: DeviceBufferLimits;
}

const staticDim = (d: number | string | undefined): number | null => (typeof d === "number" && d > 0 ? d : null);

/**
 * - native size: unet/config.json `sample_size` × the VAE scale; else the ONNX `sample` input's static
 *   H/W × the VAE scale; else {@link DEFAULT_NATIVE}. A fixed-shape export's static dims win over the config:
 *   they are the only size it can run.
 * - `fixed` when the ONNX `sample` input has static H and W, else `dynamic`.
 * - prediction type from the scheduler config (`flow_prediction` for flow-matching schedulers without one).
 * - schedulers: those declaring that prediction type (schedulers/index.ts `schedulersFor`), less the ones the
 *   scheduler config declares unfit (`_omni_unfit_samplers`, reported as `unfitSchedulers`).
 * - bytesPerRowAtNative, for latent UNets whose config lists `block_out_channels` (Stable Diffusion exports):
 *   {@link latentUnetRowElements} at the native latent size; otherwise (pixel-space tiny-shapes) (sample +
 *   encoder states + output elements of one row) × {@link ACTIVATION_FACTOR}. Either × 2 bytes for float16
 *   exports, 4 otherwise.
 */
export function describeOnnxModel(m: ModelDescriptionInput): ModelLimits {
  const [, , fixedH, fixedW] = m.sample?.shape ?? [];
  const h = staticDim(fixedH);
  const w = staticDim(fixedW);
  const sampleSize = staticDim(m.unetConfig.sample_size as number | undefined);
  const fixed = h !== null && w !== null;
  const nativeHeight = fixed ? h * m.vaeScale : sampleSize !== null ? sampleSize * m.vaeScale : DEFAULT_NATIVE;
  const nativeWidth = fixed ? w * m.vaeScale : sampleSize !== null ? sampleSize * m.vaeScale : DEFAULT_NATIVE;
  const predictionType = m.schedulerConfig.prediction_type ?? (/^FlowMatch/.test(String(m.schedulerConfig._class_name ?? "")) ? "flow_prediction" : "epsilon");
  const [, tokens, dim] = m.encoderHiddenStates?.shape ?? [];
  const latentElems = m.latentChannels * (nativeHeight / m.vaeScale) * (nativeWidth / m.vaeScale);
  const textElems = (staticDim(tokens) ?? m.textTokens) * (staticDim(dim) ?? m.textDim);
  const fitting = schedulersFor(predictionType);
  const unfit = Object.fromEntries(Object.entries(unfitSchedulers(m.schedulerConfig)).filter(([name]) => (fitting as string[]).includes(name)));
  return {
    nativeWidth,
    nativeHeight,
    spatial: fixed ? "fixed" : "dynamic",
    sizeMultiple: m.sizeMultiple,
    predictionType,
    schedulers: schedulersFor(predictionType, m.schedulerConfig),
    ...(Object.keys(unfit).length > 0 ? { unfitSchedulers: unfit } : {}),
    bytesPerRowAtNative:
      elementBytes(m.sample) *
      (m.vaeScale > 1 && Array.isArray(m.unetConfig.block_out_channels)
        ? latentUnetRowElements(m.unetConfig, nativeHeight / m.vaeScale, nativeWidth / m.vaeScale, staticDim(tokens) ?? m.textTokens)
        : // Input sample, its prediction (same shape) and the text states.
          (2 * latentElems + textElems) * ACTIVATION_FACTOR),
    memory: memoryOf(m, nativeHeight / m.vaeScale, nativeWidth / m.vaeScale, staticDim(tokens) ?? m.textTokens, latentElems, textElems),
  };
}

/**
 * Live elements of the full VAE decode per output pixel and channel of its last level. Measured on SD 1.5 at 512²
 * (bench/realscale.ts): 0.76-0.85 GiB above the loaded weights for 128 channels × 512², 6.1-6.8 per pixel-channel.
 */
const DECODE_ELEMENTS_PER_PIXEL_CHANNEL = 7;

/**
 * The {@link ModelMemory} of a model at its native latent size h × w. Latent UNets (SD family): the attention
 * score matrices and their softmax, both alive at once (2 × heads × (hw)² elements per row), grow with the
 * square of the pixel count, divided by the attention slices; the rest of {@link latentUnetRowParts} linearly.
 * The VAE decode's peak is a few feature maps of its first `block_out_channels` at full resolution
 * ({@link DECODE_ELEMENTS_PER_PIXEL_CHANNEL} × channels × H × W elements per image). Pixel-space models (tiny-shapes): the
 * ACTIVATION_FACTOR estimate, all of it quadratic above the native size (as `estimateRequestBytes` always did), no decode.
 */
function memoryOf(m: ModelDescriptionInput, h: number, w: number, tokens: number, latentElems: number, textElems: number): ModelMemory {
  const mem = hostMemoryOf(m, h, w, tokens, latentElems, textElems);
  if (!m.deviceLimits) return mem;
  // The largest single tensor of a row: one of the attention score/softmax pair (per slice) for latent UNets; for
  // pixel-space models (no attention sizes known) one row's input, output and text states, a lower bound.
  const largest = mem.unetLinearBytes > 0 ? mem.unetQuadraticBytes / 2 : mem.unetQuadraticBytes / ACTIVATION_FACTOR;
  return { ...mem, device: { ...m.deviceLimits, largestBufferBytesPerRow: largest } };
}

function hostMemoryOf(m: ModelDescriptionInput, h: number, w: number, tokens: number, latentElems: number, textElems: number): ModelMemory {
  const bytes = elementBytes(m.sample);
  const base = { weightBytes: m.weightBytes ?? 0, budgetBytes: m.budgetBytes ?? 0 };
  if (!(m.vaeScale > 1 && Array.isArray(m.unetConfig.block_out_channels))) {
    return { ...base, unetLinearBytes: 0, unetQuadraticBytes: bytes * (2 * latentElems + textElems) * ACTIVATION_FACTOR, decodeBytes: 0 };
  }
  const parts = latentUnetRowParts(m.unetConfig, h, w, tokens);
  const vaeChannels = Number((m.vaeConfig?.block_out_channels as unknown[] | undefined)?.[0]) || 128;
  return {
    ...base,
    unetLinearBytes: bytes * parts.linear,
    // Scores and their softmax for one slice of the query rows at a time.
    unetQuadraticBytes: (bytes * 2 * parts.attention) / Math.max(1, m.attentionSlices ?? 1),
    // The VAE's own element size (a float16 SD export's VAE is float16; SDXL's stays float32 for force_upcast).
    decodeBytes: elementBytes(m.vaeSample ?? m.sample) * DECODE_ELEMENTS_PER_PIXEL_CHANNEL * vaeChannels * h * m.vaeScale * w * m.vaeScale,
    ...(m.decodeImagesPerCall !== undefined && Number.isFinite(m.decodeImagesPerCall) ? { decodeImagesPerCall: m.decodeImagesPerCall } : {}),
  };
}

/**
 * Peak live elements of one row of a diffusers `UNet2DConditionModel` at latent size h×w, from its config: the
 * skip connections kept for the up path (three per level), the working tensors of the widest level (four), and
 * the attention score matrices of the first level (heads × (hw)² for self-attention, heads × hw × tokens for
 * cross-attention), which dominate at 64×64 latents (onnxruntime's CPU and CUDA providers materialise them).
 * SD 1.5 at 512²: ~147 M elements, ~590 MB in float32. An estimate for refusing what cannot fit, not a measurement.
 */
export function latentUnetRowElements(unetConfig: Record<string, unknown>, h: number, w: number, tokens: number): number {
  const p = latentUnetRowParts(unetConfig, h, w, tokens);
  return p.linear + p.attention;
}

/** {@link latentUnetRowElements} in two parts: self-attention's score matrices (heads × (hw)²) and the rest. */
export function latentUnetRowParts(unetConfig: Record<string, unknown>, h: number, w: number, tokens: number): { linear: number; attention: number } {
  const channels = (unetConfig.block_out_channels as unknown[]).map(Number).filter((c) => c > 0);
  const hw = h * w;
  let skips = 0;
  let widest = 0;
  channels.forEach((c, i) => {
    const cells = hw / 4 ** i;
    skips += 3 * c * cells;
    widest = Math.max(widest, c * cells);
  });
  const headDim = unetConfig.attention_head_dim;
  // The first level with attention: SDXL's first level is a plain DownBlock2D, so its attention runs at hw / 4.
  const types = unetConfig.down_block_types;
  const level = Array.isArray(types) ? Math.max(0, types.findIndex((t) => /CrossAttn/.test(String(t)))) : 0;
  const cells = hw / 4 ** level;
  // SD 2.x / SDXL list head sizes per level (channels / 64 heads); SD 1.x one head count.
  const heads = Array.isArray(headDim) ? Math.max(1, Math.round((channels[level] ?? 320) / 64)) : typeof headDim === "number" && headDim > 0 ? headDim : DEFAULT_HEADS;
  return { linear: skips + 4 * widest + heads * cells * tokens, attention: heads * cells * cells };
}
