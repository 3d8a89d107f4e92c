import { DiffusionOutput } from "../core/output.js";
import type { OmniDiffusionRequest } from "../core/request.js";
import { toOmniError, type OmniError } from "../errors/omni-error.js";
import { StepLoop, type ResolvedRequest } from "./step-loop.js";
import type { GenerateOptions, SteppablePipeline } from "./types.js";

/**
 * One-shot generation on a steppable pipeline: the requests as one batch of a {@link StepLoop} (request-level
 * admission). Requests that fail validation or are aborted get an error; the rest still run. What
 * `generate` is for every built-in pipeline (the SD/SDXL one and the SDXL ensemble).
 */
export async function generateOnce(pipeline: SteppablePipeline, requests: OmniDiffusionRequest[], opts: GenerateOptions = {}): Promise<DiffusionOutput> {
  const errors: Record<string, OmniError> = {};
  const resolved: ResolvedRequest[] = [];
  for (const request of requests) {
    try {
      resolved.push({ request, params: pipeline.resolve(request) });
    } catch (err) {
      errors[request.requestId] = toOmniError(err);
    }
  }
  const every = opts.previewEvery;
  const previewEvery = typeof every === "number" ? Object.fromEntries(requests.map((r) => [r.requestId, every])) : every;
  const loop = new StepLoop(pipeline, { maxBatchRows: pipeline.maxBatchRows, admission: "request" });
  const out = await loop.run(resolved, { onProgress: opts.onProgress, isAborted: opts.isAborted, signal: opts.signal, previewEvery });
  return DiffusionOutput.merge([out, new DiffusionOutput({ errors })]);
}
