/**
 * A worker's resident memory, estimated before anything is allocated, so a request or a worker count that would
 * not fit the machine is refused with numbers instead of being picked by the kernel's OOM killer.
 *
 * Peak RSS ≈ runtime + weights + the larger of the UNet's and the VAE decoder's activations (each is freed before
 * the next runs: the shipped sessions have no arena). Calibrated against measured peak RSS on a full-size SD 1.5
 * (bench/realscale.ts --calibrate prints estimate and measurement side by side).
 */
import type { ModelLimits, ModelMemory } from "./model-limits.js";

export type { ModelMemory };

/** The Node runtime, onnxruntime's code, tokenizer and buffers: resident beyond weights and activations (measured ~100-150 MB). */
export const RUNTIME_BYTES = 256 * 1024 ** 2;

/** Share of the machine's memory the workers may take together; the rest is the server's, the OS's and the page cache's. */
export const MACHINE_MEMORY_SHARE = 0.9;

/** One worker's budget when `workers` share a machine with `totalBytes` of memory. */
export function memoryBudgetBytes(totalBytes: number, workers: number): number {
  return Math.floor((totalBytes * MACHINE_MEMORY_SHARE) / Math.max(1, workers));
}

/** The parts of {@link estimateWorkerBytes}, bytes. */
export interface WorkerBytesEstimate {
  total: number;
  weights: number;
  runtime: number;
  unet: number;
  decode: number;
}

/** Estimated peak RSS of a worker running one request of `rows` UNet rows and `images` images at width × height. */
export function estimateWorkerBytes(model: Pick<ModelLimits, "nativeWidth" | "nativeHeight"> & { memory: ModelMemory }, width: number, height: number, rows: number, images: number): WorkerBytesEstimate {
  const m = model.memory;
  const ratio = (width * height) / (model.nativeWidth * model.nativeHeight);
  const unet = rows * (m.unetLinearBytes * ratio + m.unetQuadraticBytes * ratio * ratio);
  const decode = Math.min(images, m.decodeImagesPerCall ?? images) * m.decodeBytes * ratio;
  const total = RUNTIME_BYTES + m.weightBytes + Math.max(unet, decode);
  return { total, weights: m.weightBytes, runtime: RUNTIME_BYTES, unet, decode };
}

const gib = (b: number) => (b / 1024 ** 3).toFixed(2);

/** "5.41 GiB (weights 3.98 + runtime 0.25 + UNet 1.18 / decode 1.40)": the numbers a refusal names. */
export function describeWorkerBytes(e: WorkerBytesEstimate): string {
  return `${gib(e.total)} GiB (weights ${gib(e.weights)} + runtime ${gib(e.runtime)} + the larger of UNet activations ${gib(e.unet)} and VAE decode ${gib(e.decode)})`;
}
