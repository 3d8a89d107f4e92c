import type { GeneratedImage } from "./output.js";

/**
 * The UNet call that advanced a request one step. Every request in the call reports the same call, so
 * exactly one of them carries `primary: true`: metrics count calls from those events only.
 */
export interface StepBatchInfo {
  /** UNet rows of the call (images, doubled for classifier-free guidance). */
  rows: number;
  /** Requests that shared the call. */
  requests: number;
  /** Wall-clock time of the call (tensor packing, UNet, scheduler steps), ms. */
  ms: number;
  primary: boolean;
}

/** Progress of one request: step `step` of `totalSteps` just finished. */
export interface StepProgress {
  requestId: string;
  step: number;
  totalSteps: number;
  /** Decoded preview of the current predicted image, when asked for. */
  preview?: GeneratedImage[];
  /** The UNet call this step ran in, where the worker reports it. */
  batch?: StepBatchInfo;
}
