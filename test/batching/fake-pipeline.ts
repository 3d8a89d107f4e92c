/**
 * A steppable pipeline with no model behind it, for tests of the step loop's scheduling: each `step` is one
 * "UNet call" recorded in `calls` (which requests, size, rows), and a state finishes after its step count.
 * Nothing is timed: the loop prices calls with the profile the test gives it.
 */
import { DiffusionOutput, type GeneratedImage } from "../../src/core/output.js";
import { OmniDiffusionRequest, type OmniDiffusionRequestInit } from "../../src/core/request.js";
import { isFinished, rowsOf, type DenoiseState, type ResolvedParams } from "../../src/pipelines/denoise-state.js";
import type { ResolvedRequest } from "../../src/pipelines/step-loop.js";
import type { PipelineInfo, SteppablePipeline, UnetCall } from "../../src/pipelines/types.js";

/** One step the fake made: the requests in it, their image size and UNet rows. */
export interface FakeCall {
  size: string;
  rows: number;
  ids: string[];
}

export class FakePipeline implements SteppablePipeline {
  maxBatchRows = 1024;
  readonly calls: FakeCall[] = [];

  get info(): PipelineInfo {
    const defaults = { numInferenceSteps: 4, guidanceScale: 1, scheduler: "fake" };
    return { modelDir: "fake", className: "FakePipeline", components: [], width: 64, height: 64, sizeMultiple: 8, defaults, asleep: false };
  }

  resolve(r: OmniDiffusionRequest): ResolvedParams {
    return {
      width: r.width ?? 64,
      height: r.height ?? 64,
      numInferenceSteps: r.numInferenceSteps ?? 4,
      guidanceScale: r.guidanceScale ?? 1,
      guidanceRescale: 0,
      scheduler: null,
      seed: r.seed ?? 0,
      numOutputs: r.numOutputsPerPrompt,
      negativePrompt: "",
    };
  }

  validate(r: OmniDiffusionRequest): void {
    this.resolve(r);
  }

  async prepare(requests: OmniDiffusionRequest[], resolved?: ResolvedParams[]): Promise<DenoiseState[]> {
    return requests.map((request, i) => {
      const params = resolved?.[i] ?? this.resolve(request);
      const samples = Array.from({ length: params.numOutputs }, (_, k) => ({ seed: params.seed + k, latents: new Float32Array(0), scheduler: null as never, rng: null as never, predX0: null }));
      return {
        request,
        params,
        samples,
        cond: new Float32Array(0),
        uncond: params.guidanceScale > 1 ? new Float32Array(0) : null,
        latentShape: [4, params.height / 8, params.width / 8],
        timesteps: Array.from({ length: params.numInferenceSteps }, (_, k) => 999 - k),
        stepIndex: 0,
        trajectory: null,
        error: null,
        startedAt: 0,
        denoiseMs: 0,
      } satisfies DenoiseState;
    });
  }

  async step(states: DenoiseState[]): Promise<UnetCall[]> {
    const live = states.filter((s) => !isFinished(s));
    if (!live.length) return [];
    for (const s of live) s.stepIndex++;
    const rows = live.reduce((a, s) => a + rowsOf(s), 0);
    this.calls.push({ size: `${live[0]!.params.width}x${live[0]!.params.height}`, rows, ids: live.map((s) => s.request.requestId) });
    return [{ states: live, rows, ms: 0 }];
  }

  async decode(states: DenoiseState[]): Promise<GeneratedImage[][]> {
    return states.map((s) => s.samples.map((smp, k) => ({ requestId: s.request.requestId, index: k, seed: smp.seed, width: 1, height: 1, data: new Uint8Array(3) })));
  }

  async generate(): Promise<DiffusionOutput> {
    return new DiffusionOutput({});
  }

  async release(): Promise<void> {}
  async reload(): Promise<void> {}

  /** A request of this fake, resolved as the worker would hand it to the loop. */
  request(id: string, init: Partial<OmniDiffusionRequestInit> = {}): ResolvedRequest {
    const request = new OmniDiffusionRequest({ prompt: "x", seed: 1, numInferenceSteps: 4, ...init, requestId: id });
    return { request, params: this.resolve(request) };
  }
}
