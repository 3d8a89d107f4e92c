import { DiffusionOutput } from "../../core/output.js";
import type { OmniRequestOutput } from "../../core/request-output.js";

/**
 * One request's OmniRequestOutput as the DiffusionOutput the wire carries (its error under its request id,
 * or its images, trajectory and metrics). Shared by the worker and queue servers, which answer in the same
 * wire shape and so must not import each other.
 */
export function toDiffusionOutput(out: OmniRequestOutput): DiffusionOutput {
  if (out.error) return new DiffusionOutput({ errors: { [out.requestId]: out.error } });
  return new DiffusionOutput({
    output: out.images,
    trajectoryLatents: out.latents ? [out.latents] : null,
    trajectoryTimesteps: out.timesteps ? [{ requestId: out.requestId, timesteps: out.timesteps }] : null,
    metrics: out.metrics,
  });
}
