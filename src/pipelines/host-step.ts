import { ValidationError } from "../errors/omni-error.js";
import { concatFloat32, denoiseFailure, rowsOf, type DenoiseState } from "./denoise-state.js";
import { syncToHost } from "./device-step.js";
import type { DeviceTensors } from "./device-tensors.js";
import { blendKnownRegion } from "./inpaint.js";
import { floatData, type OnnxModel } from "./onnx-model.js";
import { applyGuidance } from "./tensor-ops.js";
import type { UnetCall } from "./types.js";
import { unetFeeds, type UnetRow } from "./unet-feeds.js";

/** What one host step needs from its pipeline. */
export interface HostStepContext {
  unet: OnnxModel;
  /** Set on webgpu when the states cannot step on the device: their tensors come to the host first. */
  dev: DeviceTensors | null;
  /** Text tokens per prompt (the UNet's context length). */
  textTokens: number;
  /** Whether the export takes one timestep per row (else the caller split the call by timestep). */
  perRowTimestep: boolean;
}

/**
 * One denoising step of `states` with the sampler math on the host: every state's rows in one UNet call,
 * then guidance and each sampler's step per state (device-step.ts is the on-device twin). States are only
 * mutated after the UNet call succeeded, one at a time, so a throw from the call leaves every state as it was;
 * a state whose own rows or sampler throw gets its error and the others go on.
 */
export async function hostStep(ctx: HostStepContext, states: DenoiseState[], t0: number): Promise<UnetCall[]> {
  const { unet, dev, perRowTimestep } = ctx;
  if (dev) await syncToHost(dev, states, true);
  const [c, h, w] = states[0]!.latentShape;
  const size = c * h * w;
  const rows: UnetRow[] = [];
  const live: DenoiseState[] = [];
  for (const s of states) {
    // Each state's rows are built apart, so a sampler that throws fails its own request only.
    try {
      const t = s.timesteps[s.stepIndex]!;
      const own: typeof rows = [];
      for (const smp of s.samples) {
        const input = smp.scheduler.scaleModelInput(smp.latents, t);
        if (input.length !== size) throw new ValidationError(`sampler input has ${input.length} values, the latent shape ${size}`, { field: "latents" });
        if (s.uncond) own.push({ input, t, ctx: s.uncond, w: s.params.guidanceScale, added: s.added?.uncond ?? undefined });
        own.push({ input, t, ctx: s.cond, w: s.params.guidanceScale, added: s.added?.cond });
      }
      rows.push(...own);
      live.push(s);
    } catch (err) {
      s.error = denoiseFailure(s, err);
    }
  }
  if (!live.length) return [];
  const n = rows.length;
  const feeds = unetFeeds(unet, rows, [c, h, w], ctx.textTokens, perRowTimestep);
  const tUnet = performance.now();
  const out = await unet.run(feeds);
  const unetMs = performance.now() - tUnet;
  const predTensor = out[unet.outputs[0]!.name] ?? Object.values(out)[0]!;
  dev?.count(feeds);
  const pred = dev ? await dev.download(predTensor) : floatData(predTensor);
  if (dev) predTensor.dispose();
  let row = 0;
  const stepped: DenoiseState[] = [];
  for (const s of live) {
    const t = s.timesteps[s.stepIndex]!;
    const first = row;
    row += rowsOf(s);
    try {
      const next = s.samples.map((smp, k) => {
        const r0 = first + k * (s.uncond ? 2 : 1);
        const eps = s.uncond
          ? applyGuidance(pred.subarray(r0 * size, (r0 + 1) * size), pred.subarray((r0 + 1) * size, (r0 + 2) * size), s.params.guidanceScale, s.params.guidanceRescale)
          : pred.slice(r0 * size, (r0 + 1) * size);
        const stepped = smp.scheduler.step(eps, t, smp.latents, smp.rng);
        // Inpainting: the kept region follows the init image, noised to the next timestep (clean after the last).
        if (s.edit?.latentMask) stepped.prevSample = blendKnownRegion(stepped.prevSample, s.edit, k, smp.scheduler, s.timesteps[s.stepIndex + 1]);
        return stepped;
      });
      s.samples.forEach((smp, k) => {
        smp.latents = next[k]!.prevSample;
        smp.predX0 = next[k]!.predOriginalSample ?? null;
      });
      s.stepIndex++;
      s.trajectory?.push(concatFloat32(s.samples.map((x) => x.latents)));
      stepped.push(s);
    } catch (err) {
      s.error = denoiseFailure(s, err);
    }
  }
  const dt = performance.now() - t0;
  for (const s of live) s.denoiseMs += dt;
  return stepped.length ? [{ states: stepped, rows: n, ms: dt, unetMs }] : [];
}
