import { z } from "zod";
import { zodToValidationError } from "../utils/zod-error.js";

/**
 * What a loaded model can serve, as the worker that loaded it reports it. The engine and the servers check
 * every request against it before any tensor is allocated (see core/limits.ts), so a size the model cannot
 * serve is a 4xx naming the allowed sizes, never an onnxruntime allocation failure.
 *
 * Plain data: it crosses IPC and the wire protocols as JSON.
 */
export interface ModelLimits {
  /** The size the model was trained or exported at (pixels). */
  nativeWidth: number;
  nativeHeight: number;
  /** `fixed`: the ONNX export has static spatial dims, so only the native size can run. */
  spatial: "fixed" | "dynamic";
  /** Width and height must be multiples of this (the VAE factor × UNet down-sampling). */
  sizeMultiple: number;
  /** The model's prediction type (`epsilon`, `v_prediction`, `sample`, `flow_prediction`), which decides the samplers. */
  predictionType: string;
  /** Scheduler names that apply to this model; others are refused at validation, naming these. */
  schedulers: readonly string[];
  /**
   * Samplers that fit the prediction type but that the model's scheduler config declares unfit for it (measured to
   * draw wrong images), each with the reason; not in `schedulers`. Absent when none.
   */
  unfitSchedulers?: Readonly<Record<string, string>>;
  /**
   * Estimated peak bytes of one UNet row at the native size. core/limits.ts `estimateRequestBytes` scales it
   * with the pixel count (quadratically above the native size, for attention).
   */
  bytesPerRowAtNative: number;
  /**
   * What a worker's memory is made of (core/memory-estimate.ts): weights, activations per row and per image,
   * and the worker's share of its machine. Absent when unknown (custom pipelines, peers of older versions).
   */
  memory?: ModelMemory;
}

/** What a model's worker memory is made of (core/memory-estimate.ts estimates from it), at its native size (`ModelLimits.memory`). Plain data: crosses IPC and wires. */
export interface ModelMemory {
  /** Bytes of weights loaded (ONNX files and their external data). */
  weightBytes: number;
  /** Peak UNet activation bytes of one row that grow with the pixel count (convolutions, skip connections). */
  unetLinearBytes: number;
  /** Those that grow with its square: self-attention's score matrices, and the softmax of them, live together. */
  unetQuadraticBytes: number;
  /** Peak VAE-decode activation bytes of one image (grow with the pixel count: im2col buffers of the last convolutions). */
  decodeBytes: number;
  /** Images the full VAE decodes per call (1 when the pipeline decodes a batch one image at a time); absent: all at once. */
  decodeImagesPerCall?: number;
  /** What one worker may use, bytes: the machine's memory share of this worker (see `memoryBudgetBytes`). 0: unchecked. */
  budgetBytes: number;
  /** On a GPU device whose buffer sizes are bounded (webgpu): the limits, and the largest tensor of one UNet row at the native size. */
  device?: DeviceBufferLimits & { largestBufferBytesPerRow: number };
}

/** A WebGPU adapter's buffer limits (pipelines/webgpu-limits.ts reads them): no tensor may exceed either. */
export interface DeviceBufferLimits {
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
  /** Where the numbers come from, for messages ("the Vulkan driver (vulkaninfo)", "the WebGPU minimum"). */
  source: string;
}

/** Strict codec of {@link ModelLimits}, for replies that cross a process or the network (`describeModel`). */
export const modelLimitsSchema = z
  .object({
    nativeWidth: z.number().int().positive(),
    nativeHeight: z.number().int().positive(),
    spatial: z.enum(["fixed", "dynamic"]),
    sizeMultiple: z.number().int().positive(),
    predictionType: z.string().min(1),
    schedulers: z.array(z.string().min(1)),
    unfitSchedulers: z.record(z.string().min(1), z.string().min(1)).optional(),
    bytesPerRowAtNative: z.number().nonnegative(),
    memory: z
      .object({
        weightBytes: z.number().nonnegative(),
        unetLinearBytes: z.number().nonnegative(),
        unetQuadraticBytes: z.number().nonnegative(),
        decodeBytes: z.number().nonnegative(),
        decodeImagesPerCall: z.number().int().positive().optional(),
        budgetBytes: z.number().nonnegative(),
        device: z
          .object({ maxBufferSize: z.number().positive(), maxStorageBufferBindingSize: z.number().positive(), source: z.string(), largestBufferBytesPerRow: z.number().nonnegative() })
          .strict()
          .optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

/** Validates a `describeModel` reply; throws a ValidationError naming every bad or unknown field. */
export function parseModelLimits(value: unknown): ModelLimits {
  const r = modelLimitsSchema.safeParse(value);
  if (!r.success) throw zodToValidationError(r.error, "ModelLimits");
  return r.data;
}
