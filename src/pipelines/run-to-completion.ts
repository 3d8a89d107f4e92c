import { DiffusionOutput } from "../core/output.js";
import type { OmniDiffusionRequest } from "../core/request.js";
import { toOmniError, type OmniError } from "../errors/omni-error.js";
import { abortedAt, isFinished, trajectoriesOf, type ResolvedParams } from "./denoise-state.js";
import type { GenerateOptions, StepBatchInfo, SteppablePipeline } from "./types.js";

const yieldToEventLoop = () => new Promise<void>((r) => setImmediate(r));

/**
 * Runs one batch to completion on the step-level interface (the `request` and `none` batching policies):
 * every request is prepared together, stepped until the last one finishes, and decoded together.
 * Requests that fail validation or are aborted get an error in `errors`; the rest still run.
 */
export async function runToCompletion(pipeline: SteppablePipeline, requests: OmniDiffusionRequest[], opts: GenerateOptions = {}): Promise<DiffusionOutput> {
  const t0 = performance.now();
  const errors: Record<string, OmniError> = {};
  const valid: OmniDiffusionRequest[] = [];
  const params: ResolvedParams[] = [];
  for (const r of requests) {
    try {
      params.push(pipeline.resolve(r));
      valid.push(r);
    } catch (err) {
      errors[r.requestId] = toOmniError(err);
    }
  }
  const tText = performance.now();
  const states = valid.length ? await pipeline.prepare(valid, params) : [];
  const encodeTextMs = performance.now() - tText;
  const tDenoise = performance.now();
  while (states.some((s) => !isFinished(s))) {
    for (const s of states) {
      if (!isFinished(s) && (opts.signal?.aborted || opts.isAborted?.(s.request.requestId))) s.error = abortedAt(s);
    }
    const active = states.filter((s) => !isFinished(s));
    if (!active.length) break;
    const calls = await pipeline.step(active);
    if (opts.onProgress) {
      for (const call of calls) {
        for (const [i, s] of call.states.entries()) {
          const batch: StepBatchInfo = { rows: call.rows, requests: call.states.length, ms: call.ms, primary: i === 0 };
          const wantPreview = opts.previewEvery && s.stepIndex % opts.previewEvery === 0 && s.stepIndex < s.timesteps.length;
          const preview = wantPreview ? (await pipeline.decode([s], true))[0] : undefined;
          opts.onProgress({ requestId: s.request.requestId, step: s.stepIndex, totalSteps: s.timesteps.length, preview, batch });
        }
      }
    }
    await yieldToEventLoop(); // lets abort messages in between steps
  }
  const denoiseMs = performance.now() - tDenoise;
  const tDecode = performance.now();
  const done = states.filter((s) => !s.error);
  const images = (await pipeline.decode(done)).flat();
  for (const s of states) if (s.error) errors[s.request.requestId] = s.error;
  return new DiffusionOutput({
    output: images,
    errors,
    ...trajectoriesOf(done),
    metrics: { encodeTextMs, denoiseMs, decodeMs: performance.now() - tDecode, totalMs: performance.now() - t0 },
  });
}
