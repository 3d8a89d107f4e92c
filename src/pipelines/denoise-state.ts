import type { TrajectoryLatents, TrajectoryTimesteps } from "../core/output.js";
import type { OmniDiffusionRequest } from "../core/request.js";
import { AbortedError, OmniError, TimeoutError, toOmniError } from "../errors/omni-error.js";
import type { Scheduler } from "../schedulers/types.js";
import type { EditState } from "./init-image.js";
import type { SeededNormal } from "./random.js";

/** Request parameters after the model's defaults were applied. */
export interface ResolvedParams {
  width: number;
  height: number;
  numInferenceSteps: number;
  guidanceScale: number;
  guidanceRescale: number;
  scheduler: string | null;
  seed: number;
  numOutputs: number;
  negativePrompt: string;
  /** img2img / inpainting strength in (0, 1] after defaults (see `effectiveStrength`); absent or null for text-to-image. */
  strength?: number | null;
}

/**
 * UNet inputs beyond sample / timestep / text states, per row kind, by input name (SDXL's `text_embeds` and
 * `time_ids`): batched like the other inputs, the unconditional set on the guidance rows.
 */
export interface AddedConditioning {
  cond: Record<string, Float32Array>;
  uncond: Record<string, Float32Array> | null;
}

/** One image being denoised: its own latents, scheduler instance and noise stream. */
export interface SampleState {
  seed: number;
  latents: Float32Array;
  scheduler: Scheduler;
  rng: SeededNormal;
  /** Last predicted clean sample (for previews). */
  predX0: Float32Array | null;
}

/**
 * A request in flight inside a pipeline: everything needed to advance it one step at a time, so that
 * requests at different steps (and with different schedulers or guidance) can share one UNet call.
 */
export interface DenoiseState {
  readonly request: OmniDiffusionRequest;
  readonly params: ResolvedParams;
  readonly samples: SampleState[];
  /** Text embedding [tokens, dim] of the prompt. */
  readonly cond: Float32Array;
  /** Text embedding of the negative / empty prompt; null when guidance is off. */
  readonly uncond: Float32Array | null;
  readonly latentShape: [channels: number, height: number, width: number];
  readonly timesteps: number[];
  stepIndex: number;
  /** Latents of every step (only when asked for); the first entry is the initial noise. */
  trajectory: Float32Array[] | null;
  error: OmniError | null;
  readonly startedAt: number;
  denoiseMs: number;
  /** Init image, mask and noise of an img2img / inpainting request; absent or null for text-to-image. */
  readonly edit?: EditState | null;
  /** Added UNet inputs (SDXL); absent or null for models that take none. */
  readonly added?: AddedConditioning | null;
}

export function isFinished(s: DenoiseState): boolean {
  return s.error !== null || s.stepIndex >= s.timesteps.length;
}

/** States with equal keys can share a UNet call (same latent shape). */
export function shapeKey(s: DenoiseState): string {
  return s.latentShape.join("x");
}

/** UNet rows a state takes in one call: one per image, two with classifier-free guidance. */
export function rowsOf(s: DenoiseState): number {
  return s.samples.length * (s.uncond ? 2 : 1);
}

/** The error of a request stopped between steps (it names the step, for logs and clients). */
export function abortedAt(s: DenoiseState): AbortedError {
  const id = s.request.requestId;
  return new AbortedError(`request ${id} was aborted at step ${s.stepIndex} of ${s.timesteps.length}`, { data: { requestId: id, step: s.stepIndex } });
}

/**
 * What was thrown while running accepted work (a sampler, the UNet, the VAE), as the server's fault: an
 * `OMNI_ERR_INTERNAL` (HTTP 500) saying `what` failed, with the original as `cause`, even when a component
 * threw a ValidationError (it must never reach the client as its 4xx). Aborts, deadlines and errors already
 * internal keep their class.
 */
export function internalFailure(err: unknown, what: string, data: Record<string, unknown> = {}): OmniError {
  const e = toOmniError(err);
  if (e instanceof AbortedError || e instanceof TimeoutError || e.code === "OMNI_ERR_INTERNAL") return e;
  return new OmniError(`${what}: ${e.message}`, "OMNI_ERR_INTERNAL", { cause: e, data });
}

/** {@link internalFailure} for one request, naming it and the step (or `stage`) where it failed. */
export function denoiseFailure(s: Pick<DenoiseState, "request" | "params" | "stepIndex" | "timesteps">, err: unknown, stage = "step"): OmniError {
  const id = s.request.requestId;
  const where = stage === "step" ? `at step ${s.stepIndex + 1} of ${s.timesteps.length} (sampler ${s.params.scheduler ?? "default"})` : `in ${stage}`;
  return internalFailure(err, `request ${id} failed ${where}`, { requestId: id, step: s.stepIndex, stage });
}

/** The trajectory latents and timesteps the finished states asked for, in the output's form (null when none did). */
export function trajectoriesOf(done: DenoiseState[]): { trajectoryLatents: TrajectoryLatents[] | null; trajectoryTimesteps: TrajectoryTimesteps[] | null } {
  const lat = done
    .filter((s) => s.trajectory)
    .map((s) => ({ requestId: s.request.requestId, shape: [s.trajectory!.length, s.samples.length, ...s.latentShape], data: concatFloat32(s.trajectory!) }));
  const ts = done.filter((s) => s.request.returnTrajectoryTimesteps).map((s) => ({ requestId: s.request.requestId, timesteps: [...s.timesteps] }));
  return { trajectoryLatents: lat.length ? lat : null, trajectoryTimesteps: ts.length ? ts : null };
}

export function concatFloat32(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
