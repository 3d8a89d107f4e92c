import type { DiffusionOutput, StageMetrics } from "../core/output.js";
import { newRequestId, type OmniDiffusionRequestInit } from "../core/request.js";
import { OmniRequestOutput } from "../core/request-output.js";
import { OmniError, toOmniError } from "../errors/omni-error.js";
import type { QueuedRequest } from "./batch-queue.js";

/**
 * One request's output from its batch's executor output, with its own timings: `queueMs` is the whole
 * wait before denoising (the engine's queue plus the worker's, e.g. waiting to join a full step loop);
 * `firstStepMs` counts from entering the engine's queue (when the engine saw no step, it adds the worker's own figure to the wait before dispatch). A request the executor gave neither an image
 * nor an error for gets an OMNI_ERR_INTERNAL error (never a silent empty result).
 */
export function requestOutputOf(q: QueuedRequest, out: DiffusionOutput, dispatchedAt: number): OmniRequestOutput {
  // The timings first, from the batch's metrics, so the output is built once with them.
  const metrics: StageMetrics = { ...out.metrics, queueMs: dispatchedAt - q.enqueuedAt + (out.metrics.workerQueueMs ?? 0) };
  if (q.firstStepAt !== undefined) metrics.firstStepMs = q.firstStepAt - q.enqueuedAt;
  // Nobody asked for steps, so the engine saw none: the worker's own count (from when it received the request) plus the wait before dispatch.
  else if (out.metrics.firstStepMs !== undefined) metrics.firstStepMs = dispatchedAt - q.enqueuedAt + out.metrics.firstStepMs;
  const missing = () =>
    out.error
      ? new OmniError(out.error, "OMNI_ERR_WORKER")
      : new OmniError(`executor returned no image for request ${q.request.requestId}`, "OMNI_ERR_INTERNAL");
  return OmniRequestOutput.fromDiffusionOutput(q.request, out, missing, metrics);
}

/** The output of a request that could not even be built (e.g. `numInferenceSteps: 0`): it fails alone, under the id it asked for. */
export function unbuiltRequestOutput(input: unknown, err: unknown): OmniRequestOutput {
  const init = (input ?? {}) as Partial<OmniDiffusionRequestInit>;
  return new OmniRequestOutput({
    requestId: typeof init.requestId === "string" && init.requestId ? init.requestId : newRequestId(),
    prompt: typeof init.prompt === "string" ? init.prompt : "",
    seed: typeof init.seed === "number" ? init.seed : null,
    error: toOmniError(err),
  });
}
