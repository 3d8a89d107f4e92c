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
  /** The model's prediction type (`epsilon`, `v_prediction`, `sample`, `flow`), which decides the samplers. */
  predictionType: string;
  /** Scheduler names that apply to this model; others are refused at validation, naming these. */
  schedulers: readonly string[];
  /** Estimated peak bytes of one UNet row at the native size; the estimate scales with pixel count. */
  bytesPerRowAtNative: number;
}
