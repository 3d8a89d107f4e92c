import { DiffusionOutput, type GeneratedImage } from "../../core/output.js";
import type { OmniRequestOutput } from "../../core/request-output.js";
import { encodePng } from "../../utils/png.js";

/**
 * One request's OmniRequestOutput as the DiffusionOutput the wire carries (its error under its request id,
 * or its images, trajectory and metrics). Shared by the worker and queue servers, which answer in the same
 * wire shape and so must not import each other. Images are encoded to PNG here, once: every reply that sends
 * it (HTTP, SSE, SageMaker, gRPC, a retry served from the cache, a second caller of the same request id)
 * sends those bytes (`pngOf`) instead of encoding the pixels again.
 */
export function toDiffusionOutput(out: OmniRequestOutput): DiffusionOutput {
  if (out.error) return new DiffusionOutput({ errors: { [out.requestId]: out.error } });
  return new DiffusionOutput({
    output: out.images.map(withPng),
    trajectoryLatents: out.latents ? [out.latents] : null,
    trajectoryTimesteps: out.timesteps ? [{ requestId: out.requestId, timesteps: out.timesteps }] : null,
    metrics: out.metrics,
  });
}

/** The image with its PNG: the one it came with, else one fresh encode (the pixels are not copied). */
function withPng(img: GeneratedImage): GeneratedImage {
  if (img.png) return img;
  const { requestId, index, seed, width, height, data } = img;
  return { requestId, index, seed, width, height, data, png: encodePng(img) };
}
