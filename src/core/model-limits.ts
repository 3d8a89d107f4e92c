import { z } from "zod";
import { UnknownMethodError, toOmniError } from "../errors/omni-error.js";
import type { DiffusionExecutor } from "../executors/base.js";
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
  })
  .strict();

/** Validates a `describeModel` reply; throws a ValidationError naming every bad or unknown field. */
export function parseModelLimits(value: unknown): ModelLimits {
  const r = modelLimitsSchema.safeParse(value);
  if (!r.success) throw zodToValidationError(r.error, "ModelLimits");
  return r.data;
}

/** Longest wait for the `describeModel` reply at start-up, ms (a remote peer that never answers must not stall create()). */
const DESCRIBE_TIMEOUT_MS = 30_000;

/**
 * Asks rank 0 what its model can serve (the worker's `describeModel` RPC), once, after the executor started.
 * Executors that cannot answer (no such RPC, e.g. the OpenAI executor) give null: then only the config's
 * limits apply, and the workers still refuse what their model cannot run. Other failures warn and give null.
 */
export async function fetchModelLimits(executor: DiffusionExecutor, rpcTimeoutMs: number): Promise<ModelLimits | null> {
  try {
    const reply = await executor.collectiveRpc("describeModel", { uniqueReplyRank: 0, timeout: Math.min(rpcTimeoutMs, DESCRIBE_TIMEOUT_MS) });
    return parseModelLimits(reply);
  } catch (err) {
    const e = toOmniError(err);
    if (!(e instanceof UnknownMethodError) && e.code !== "OMNI_ERR_UNKNOWN_METHOD") {
      process.emitWarning(`omni-diffusion: the executor did not describe its model (${e.message}); only the config limits apply`);
    }
    return null;
  }
}
