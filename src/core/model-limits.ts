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
   * Estimated peak bytes of one UNet row at the native size. core/limits.ts `estimateRequestBytes` scales it
   * with the pixel count (quadratically above the native size, for attention).
   */
  bytesPerRowAtNative: number;
  /** Bytes of the weights a worker loads (ONNX files and their external data); absent when unknown (remote peers of older versions). */
  weightBytes?: number;
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
    bytesPerRowAtNative: z.number().nonnegative(),
    weightBytes: z.number().nonnegative().optional(),
  })
  .strict();

/** Validates a `describeModel` reply; throws a ValidationError naming every bad or unknown field. */
export function parseModelLimits(value: unknown): ModelLimits {
  const r = modelLimitsSchema.safeParse(value);
  if (!r.success) throw zodToValidationError(r.error, "ModelLimits");
  return r.data;
}
