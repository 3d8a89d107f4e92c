import type { DiffusionOutput, GeneratedImage } from "../core/output.js";
import type { OmniDiffusionRequest } from "../core/request.js";
import { AbortedError, OmniError, TimeoutError } from "../errors/omni-error.js";
import { internalFailure, type DenoiseState, type ResolvedParams } from "../pipelines/denoise-state.js";
import type { StepLoopRunOptions } from "../pipelines/step-loop.js";
import type { DiffusionPipeline, GenerateOptions, PipelineInfo, SteppablePipeline, UnetCall } from "../pipelines/types.js";

const NO_LATENTS = new Float32Array(0);

/**
 * A pipeline without the step-level interface, seen by the {@link StepLoop} as one that has it: its only
 * "step" runs the whole `generate` of the states it is given, so the step loop stays the worker's one
 * generation path. Meant for `request` admission (one generate call's requests together, the next call once
 * they finished, each iteration alone under the worker's exclusive lane): what such a pipeline always got.
 *
 * Every state has one timestep and the same (empty) latent shape, so a call's requests form one group and
 * reach `generate` together. `step` returns no UNet calls: the loop reports no step of its own, the
 * pipeline reports its real steps through the caller's `onProgress`. `runOptionsOf` gives each request's
 * run options (its caller's abort check, signal, progress and previews), which the loop keeps to itself.
 */
export class OneStepPipeline implements SteppablePipeline {
  readonly inner: DiffusionPipeline;
  /** One group per iteration whatever its size: the rows of `generate` are the pipeline's business. */
  maxBatchRows = Number.MAX_SAFE_INTEGER;
  readonly #runOptionsOf: (requestId: string) => StepLoopRunOptions | undefined;
  readonly #what: string;
  readonly #data: Record<string, unknown>;
  readonly #images = new WeakMap<DenoiseState, GeneratedImage[]>();

  /** `what` names the call in an internal failure (`generate on worker rank 0`), with `data`. */
  constructor(inner: DiffusionPipeline, runOptionsOf: (requestId: string) => StepLoopRunOptions | undefined, what: string, data: Record<string, unknown> = {}) {
    this.inner = inner;
    this.#runOptionsOf = runOptionsOf;
    this.#what = what;
    this.#data = data;
  }

  get info(): PipelineInfo {
    return this.inner.info;
  }

  validate(request: OmniDiffusionRequest): void {
    this.inner.validate(request);
  }

  generate(requests: OmniDiffusionRequest[], opts?: GenerateOptions): Promise<DiffusionOutput> {
    return this.inner.generate(requests, opts);
  }

  release(): Promise<void> {
    return this.inner.release();
  }

  reload(): Promise<void> {
    return this.inner.reload();
  }

  /** The pipeline's own check; the params are placeholders (the pipeline resolves its defaults in `generate`). */
  resolve(request: OmniDiffusionRequest): ResolvedParams {
    this.inner.validate(request);
    return {
      width: 0,
      height: 0,
      numInferenceSteps: 1,
      guidanceScale: request.guidanceScale ?? 0,
      guidanceRescale: 0,
      scheduler: request.scheduler ?? null,
      seed: request.seed ?? 0,
      numOutputs: request.numOutputsPerPrompt,
      negativePrompt: request.negativePrompt ?? "",
    };
  }

  async prepare(requests: OmniDiffusionRequest[], resolved: ResolvedParams[] = requests.map((r) => this.resolve(r))): Promise<DenoiseState[]> {
    const startedAt = performance.now();
    return requests.map((request, i) => ({
      request,
      params: resolved[i]!,
      samples: [],
      cond: NO_LATENTS,
      uncond: null,
      latentShape: [0, 0, 0],
      timesteps: [0],
      stepIndex: 0,
      trajectory: null,
      error: null,
      startedAt,
      denoiseMs: 0,
    }));
  }

  /** The whole generate of `states`' requests; each state ends with its images, or its error. */
  async step(states: DenoiseState[]): Promise<UnetCall[]> {
    const requests = states.map((s) => s.request);
    const opts = this.#optionsFor(requests);
    try {
      const out = await this.inner.generate(requests, opts);
      for (const s of states) {
        const id = s.request.requestId;
        const e = out.errors[id];
        if (e) s.error = this.#stopReason(id, e);
        else this.#images.set(s, out.imagesFor(id));
        s.stepIndex = 1;
      }
    } catch (err) {
      // A throw is the worker's fault for every request, or the deadline's TimeoutError when it stopped the call.
      const reason = opts.signal?.aborted && opts.signal.reason instanceof TimeoutError ? (opts.signal.reason as TimeoutError) : null;
      const e = reason ?? internalFailure(err, `${this.#what} failed`, this.#data);
      for (const s of states) s.error = e;
    }
    return [];
  }

  async decode(states: DenoiseState[], preview?: boolean): Promise<GeneratedImage[][]> {
    // Previews come from the pipeline's own generate (previewEvery), never from here.
    if (preview) return states.map(() => []);
    return states.map((s) => this.#images.get(s) ?? []);
  }

  /** A deadline's stop reads as an abort inside the pipeline: a request its caller did not abort gets the TimeoutError. */
  #stopReason(id: string, e: OmniError): OmniError {
    const o = this.#runOptionsOf(id);
    const reason: unknown = o?.signal?.aborted ? o.signal.reason : undefined;
    if (e instanceof AbortedError && reason instanceof TimeoutError && !o?.isAborted?.(id)) return reason;
    return e;
  }

  /** One generate's options from its requests' run options (under `request` admission, one call's). */
  #optionsFor(requests: OmniDiffusionRequest[]): GenerateOptions {
    const own = requests.map((r) => [r.requestId, this.#runOptionsOf(r.requestId)] as const);
    const signals = [...new Set(own.flatMap(([, o]) => (o?.signal ? [o.signal] : [])))];
    const previews = own.flatMap(([id, o]) => (o?.previewEvery && Object.hasOwn(o.previewEvery, id) ? [[id, o.previewEvery[id]!] as const] : []));
    const listening = own.some(([, o]) => o?.onProgress);
    return {
      isAborted: (id) => this.#runOptionsOf(id)?.isAborted?.(id) ?? false,
      signal: signals.length > 1 ? AbortSignal.any(signals) : signals[0],
      onProgress: listening ? (p) => this.#runOptionsOf(p.requestId)?.onProgress?.(p) : undefined,
      previewEvery: previews.length ? Object.fromEntries(previews) : undefined,
    };
  }
}
