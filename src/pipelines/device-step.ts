import { ValidationError } from "../errors/omni-error.js";
import { denoiseFailure, isFinished, rowsOf, type DenoiseState, type SampleState } from "./denoise-state.js";
import { gatherGraph, slotsKey, stepGraph, type SampleSlot } from "./device-graphs.js";
import { disposeOnDevice, type DeviceTensors } from "./device-tensors.js";
import type { ElemType } from "./onnx-graph/small-graph.js";
import { floatTensor, numericTensor, ort, type OnnxModel } from "./onnx-model.js";
import { guidanceScaleEmbedding } from "./tensor-ops.js";
import type { UnetCall } from "./types.js";

/**
 * One denoising step with the tensors on the WebGPU device: the latents and text embeddings stay in GPU buffers
 * from one UNet call to the next; per step only the timesteps, each sampler's two coefficients and the guidance
 * scale go up (plus an ancestral sampler's noise), and nothing comes down.
 *
 * Where the sampler's math runs: samplers whose step is x' = a·x + b·ε (+ σ_up·noise) — DDIM, Euler, Euler
 * ancestral, LCM — run it on the device; their coefficients are read off the host sampler itself, by stepping it
 * on a four-value probe (so the schedule, the step index and the noise stream are the CPU path's own). Multistep
 * samplers (DPM++ 2M, PNDM) keep history the probe cannot express: guidance still runs on the device, and their
 * guided ε comes back to the host sampler (one download per step; the new latents go up with the next call).
 */

/** The UNet inputs the device step feeds. */
const UNET_INPUTS = new Set(["sample", "timestep", "encoder_hidden_states", "timestep_cond"]);

/** Samplers whose step is affine in (latents, ε, noise), with no history between steps. */
const DEVICE_SAMPLERS = new Set(["ddim", "euler", "euler_a", "lcm"]);

/** Each sample's latents while they are on the device (the host copy in `SampleState.latents` is then stale). */
const onDevice = new WeakMap<SampleState, ort.Tensor>();
/** Each sample's predicted clean sample of its last device step (read back only for a preview). */
const x0OnDevice = new WeakMap<SampleState, ort.Tensor>();
/** Device tensors held for states now (latents, predicted x0, embeddings): what an abort must give back. */
let held = 0;

/** How many device tensors the states in flight hold (tests check an abort gives them back). */
export function heldDeviceTensors(): number {
  return held;
}

function hold(map: WeakMap<SampleState, ort.Tensor>, smp: SampleState, t: ort.Tensor | undefined): void {
  const old = map.get(smp);
  if (old) {
    disposeOnDevice(old);
    held--;
  }
  if (t) {
    map.set(smp, t);
    held++;
  } else map.delete(smp);
}
/** Each request's text embeddings, uploaded once (at its first step). */
const embeddings = new WeakMap<DenoiseState, { cond: ort.Tensor; uncond: ort.Tensor | null }>();

/** What the device step needs from its pipeline. */
export interface DeviceStepContext {
  unet: OnnxModel;
  dev: DeviceTensors;
  textTokens: number;
  perRowTimestep: boolean;
  /** Run the samplers' math on the host for every sampler (the bench's comparison; tests of the host branch). */
  hostSamplers?: boolean;
}

/**
 * Whether `states` can step on the device: not those that need every step's latents on the host (trajectories),
 * inpainting's per-step blend, or guidance rescale (a standard deviation per image), which keep the host path.
 */
export function deviceEligible(unet: OnnxModel, states: readonly DenoiseState[]): boolean {
  // A UNet with inputs this step does not build (e.g. SDXL's added conditioning) keeps the host path.
  if (!unet.inputs.every((i) => UNET_INPUTS.has(i.name))) return false;
  return states.every((s) => !s.trajectory && !s.edit?.latentMask && !(s.uncond && s.params.guidanceRescale > 0));
}

function elemOf(type: string | undefined): ElemType {
  return type === "float16" ? "float16" : "float32";
}

/** x' = a·x + b·ε + c·noise, read off the sampler by stepping it once on probe values; throws when the step is not affine. */
function affineStep(smp: SampleState, t: number): { a: number; b: number; noiseScale: number; x0: { a: number; b: number } | null } {
  let drew = false;
  const probeNoise = {
    randn(out: Float32Array): Float32Array {
      drew = true;
      out.fill(0);
      if (out.length === 4) out[2] = 1;
      return out;
    },
  };
  const stepped = smp.scheduler.step(Float32Array.of(0, 1, 0, 3), t, Float32Array.of(1, 0, 0, 2), probeNoise);
  const y = stepped.prevSample;
  const p = stepped.predOriginalSample;
  const [a, b, c, check] = [y[0]!, y[1]!, y[2]!, y[3]!];
  if (![a, b, c, check].every(Number.isFinite) || Math.abs(2 * a + 3 * b - check) > 1e-5 * (1 + Math.abs(check))) {
    throw new ValidationError(`sampler "${smp.scheduler.name}" did not step as x' = a·x + b·ε at t=${t}: it cannot run on the device`, { field: "scheduler" });
  }
  // The predicted clean sample is affine in (x, ε) too (no noise in it): previews read it.
  const x0 = p && p.length === 4 && [p[0]!, p[1]!].every(Number.isFinite) ? { a: p[0]!, b: p[1]! } : null;
  return { a, b, noiseScale: drew ? c : 0, x0 };
}

/** One UNet call over `states` with the tensors on the device; mutates the states only once the call succeeded. */
export async function deviceStep(ctx: DeviceStepContext, states: DenoiseState[]): Promise<UnetCall[]> {
  const t0 = performance.now();
  const { unet, dev } = ctx;
  const [c, h, w] = states[0]!.latentShape;
  const size = c * h * w;
  const ctxElem = elemOf(unet.input("encoder_hidden_states")?.type);
  const slots: SampleSlot[] = [];
  const feeds: Record<string, ort.Tensor> = {};
  const scales: number[] = [];
  const timesteps: number[] = [];
  const guidance: number[] = [];
  /** Latents uploaded for this call only (not yet held): freed if the UNet call fails. */
  const uploaded: ort.Tensor[] = [];
  for (const [j, s] of states.entries()) {
    const t = s.timesteps[s.stepIndex]!;
    let emb = embeddings.get(s);
    if (!emb) {
      const tokens = ctx.textTokens;
      const up = (e: Float32Array) => dev.upload(e, [1, tokens, e.length / tokens], ctxElem);
      emb = { cond: await up(s.cond), uncond: s.uncond ? await up(s.uncond) : null };
      embeddings.set(s, emb);
      held += emb.uncond ? 2 : 1;
    }
    feeds[`c${j}`] = emb.cond;
    if (emb.uncond) feeds[`u${j}`] = emb.uncond;
    for (const smp of s.samples) {
      const i = slots.length;
      const device = !ctx.hostSamplers && DEVICE_SAMPLERS.has(smp.scheduler.name);
      slots.push({ cfg: !!s.uncond, mode: device ? "device" : "host", noise: false, ctx: j });
      // Latents not yet on the device go up once, here (the first step, or after a step on the host path).
      const resident = onDevice.get(smp);
      feeds[`x${i}`] = resident ?? (await dev.upload(smp.latents, [1, c, h, w]));
      if (!resident) uploaded.push(feeds[`x${i}`]!);
      const scale = smp.scheduler.scaleModelInput(Float32Array.of(1), t)[0]!;
      for (let r = 0; r < (s.uncond ? 2 : 1); r++) {
        scales.push(scale);
        timesteps.push(t);
        guidance.push(s.params.guidanceScale);
      }
    }
  }
  feeds.s = new ort.Tensor("float32", Float32Array.from(scales), [scales.length, 1, 1, 1]);
  const sampleElem = elemOf(unet.input("sample")?.type);
  const gathered = await dev.run(`gather:${slotsKey(slots)}:${sampleElem}:${ctxElem}`, () => gatherGraph(slots, states.length, sampleElem, ctxElem), feeds, ["sample", "ehs"]);
  const n = scales.length;
  const unetFeeds: Record<string, ort.Tensor> = { sample: gathered.sample!, encoder_hidden_states: gathered.ehs! };
  const tsInput = unet.input("timestep")!;
  unetFeeds.timestep = numericTensor(tsInput.type, ctx.perRowTimestep ? timesteps : [timesteps[0]!], ctx.perRowTimestep ? [n] : tsInput.shape.length ? [1] : []);
  const tc = unet.input("timestep_cond");
  if (tc) {
    const dim = Number(tc.shape[1]) || 256;
    const emb = new Float32Array(n * dim);
    guidance.forEach((g, r) => emb.set(guidanceScaleEmbedding(g - 1, dim), r * dim));
    unetFeeds.timestep_cond = floatTensor(tc.type, emb, [n, dim]);
  }
  const tUnet = performance.now();
  let out: Record<string, ort.Tensor>;
  try {
    out = await unet.run(unetFeeds);
  } catch (err) {
    uploaded.forEach(disposeOnDevice);
    throw err;
  } finally {
    disposeOnDevice(gathered.sample);
    disposeOnDevice(gathered.ehs);
  }
  dev.count(unetFeeds, out);
  const unetMs = performance.now() - tUnet;

  try {
    return [await advance(ctx, states, slots, feeds, out[unet.outputs[0]!.name] ?? Object.values(out)[0]!, t0, unetMs)];
  } catch (err) {
    // The samplers moved when their coefficients were read: a retry would step them twice, so every state fails here.
    for (const s of states) {
      s.error = denoiseFailure(s, err);
      releaseState(s);
    }
    return [];
  }
}

/** After the UNet: the samplers' coefficients, the step graph, and the states moved on. */
async function advance(ctx: DeviceStepContext, states: DenoiseState[], slots: SampleSlot[], feeds: Record<string, ort.Tensor>, pred: ort.Tensor, t0: number, unetMs: number): Promise<UnetCall> {
  const { dev } = ctx;
  const [c, h, w] = states[0]!.latentShape;
  const size = c * h * w;
  // The samplers' coefficients: stepping a device sampler on its probe advances it, so from here on the states move.
  const stepFeeds: Record<string, ort.Tensor> = { pred };
  let i = 0;
  for (const s of states) {
    const t = s.timesteps[s.stepIndex]!;
    for (const smp of s.samples) {
      const slot = slots[i]!;
      if (slot.cfg) stepFeeds[`g${i}`] = new ort.Tensor("float32", Float32Array.of(s.params.guidanceScale), [1]);
      if (slot.mode === "device") {
        const { a, b, noiseScale, x0 } = affineStep(smp, t);
        const scalar = (v: number) => new ort.Tensor("float32", Float32Array.of(v), [1]);
        stepFeeds[`x${i}`] = feeds[`x${i}`]!;
        stepFeeds[`a${i}`] = scalar(a);
        stepFeeds[`b${i}`] = scalar(b);
        if (x0) {
          stepFeeds[`pa${i}`] = scalar(x0.a);
          stepFeeds[`pb${i}`] = scalar(x0.b);
          slot.x0 = true;
        }
        if (noiseScale !== 0) {
          // The same draw, from the same stream, as the host sampler makes; only its scaling moved here.
          const noise = smp.rng.randn(new Float32Array(size));
          for (let k = 0; k < size; k++) noise[k] = noise[k]! * noiseScale;
          stepFeeds[`n${i}`] = new ort.Tensor("float32", noise, [1, c, h, w]);
          slot.noise = true;
        }
      }
      i++;
    }
  }
  let stepped: Record<string, ort.Tensor>;
  try {
    const onDev = slots.flatMap((s, k) => (s.mode === "device" ? [`y${k}`, `p${k}`] : []));
    stepped = await dev.run(`step:${slotsKey(slots)}:${elemOf(pred.type)}`, () => stepGraph(slots, elemOf(pred.type)), stepFeeds, onDev);
  } finally {
    disposeOnDevice(pred);
  }
  i = 0;
  for (const s of states) {
    const t = s.timesteps[s.stepIndex]!;
    for (const smp of s.samples) {
      const slot = slots[i]!;
      if (slot.mode === "device") {
        if (!onDevice.has(smp)) disposeOnDevice(feeds[`x${i}`]); // the first step's upload, not held
        hold(onDevice, smp, stepped[`y${i}`]);
        hold(x0OnDevice, smp, stepped[`p${i}`]);
        smp.predX0 = null;
      } else {
        if (!onDevice.has(smp)) disposeOnDevice(feeds[`x${i}`]);
        const next = smp.scheduler.step(stepped[`e${i}`]!.data as Float32Array, t, smp.latents, smp.rng);
        smp.latents = next.prevSample;
        smp.predX0 = next.predOriginalSample ?? null;
      }
      i++;
    }
    s.stepIndex++;
  }
  const dt = performance.now() - t0;
  for (const s of states) s.denoiseMs += dt;
  return { states, rows: states.reduce((r, s) => r + rowsOf(s), 0), ms: dt, unetMs };
}

/**
 * Brings the device latents of `states` back to their host `latents` (before a decode), and for a `preview` their
 * predicted clean sample to `predX0`. `leave`: the host copy becomes the only one (a step on the host path follows);
 * a finished state's device tensors go too.
 */
export async function syncToHost(dev: DeviceTensors, states: readonly DenoiseState[], leave = false, preview = false): Promise<void> {
  for (const s of states) {
    for (const smp of s.samples) {
      const t = onDevice.get(smp);
      if (!t) continue;
      smp.latents = Float32Array.from(await dev.download(t));
      const x0 = x0OnDevice.get(smp);
      if (preview && x0) smp.predX0 = Float32Array.from(await dev.download(x0));
    }
    if (leave || isFinished(s)) releaseState(s);
  }
}

/** Frees a state's device buffers (it finished, failed or was aborted, or moves to the host path). */
export function releaseState(s: DenoiseState): void {
  for (const smp of s.samples) {
    hold(onDevice, smp, undefined);
    hold(x0OnDevice, smp, undefined);
  }
  const e = embeddings.get(s);
  if (!e) return;
  embeddings.delete(s);
  for (const t of [e.cond, e.uncond]) {
    if (!t) continue;
    disposeOnDevice(t);
    held--;
  }
}
