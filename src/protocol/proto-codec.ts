/**
 * The messages of `proto/omni_diffusion.proto` as plain objects (what `@grpc/proto-loader` hands over with
 * `keepCase`, numbers for 64-bit fields and Buffers for bytes), and their conversion to and from requests
 * and DiffusionOutputs. Pure data: no gRPC runtime is loaded, so custom gRPC executors can use it with any
 * client.
 */
import { fileURLToPath } from "node:url";
import { DiffusionOutput } from "../core/output.js";
import type { OmniDiffusionRequestDict } from "../core/request.js";
import { deserializeError, serializeError, type OmniError } from "../errors/omni-error.js";
import { lazyPngImage, pngOf, pngSize } from "../utils/png.js";

/** Path of the service definition (in the package root, next to `src/` and `dist/`). */
export const PROTO_PATH = fileURLToPath(new URL("../../proto/omni_diffusion.proto", import.meta.url));

/** Message shapes as proto-loader hands them over (keepCase, longs as numbers, bytes as Buffers). */
export interface ProtoRequest {
  request_id: string;
  prompt: string;
  negative_prompt?: string;
  height?: number;
  width?: number;
  num_inference_steps?: number;
  guidance_scale?: number;
  guidance_rescale?: number;
  seed?: number;
  num_outputs_per_prompt?: number;
  scheduler?: string;
  return_trajectory_latents?: boolean;
  return_trajectory_timesteps?: boolean;
  /** Init image, PNG bytes (img2img / inpainting). */
  image?: Buffer;
  /** Mask, PNG bytes (white = repaint). */
  mask_image?: Buffer;
  strength?: number;
  vae?: string;
  /** The model that runs it; unset: the server's default. */
  model?: string;
  loras?: { name: string; scale: number }[];
  // SDXL: pairs as two-element lists (empty: unset, proto3 has no unset repeated field).
  prompt_2?: string;
  negative_prompt_2?: string;
  original_size?: number[];
  crops_coords_top_left?: number[];
  target_size?: number[];
  aesthetic_score?: number;
  negative_aesthetic_score?: number;
  denoising_end?: number;
}

/** SDXL's optional scalar fields, by their proto (= wire dict) names. */
export const PROTO_SDXL_SCALARS = ["prompt_2", "negative_prompt_2", "aesthetic_score", "negative_aesthetic_score", "denoising_end"] as const;
/** SDXL's pair fields: a repeated field of two numbers on the proto, `[a, b]` in the dict. */
export const PROTO_SDXL_PAIRS = ["original_size", "crops_coords_top_left", "target_size"] as const;

export interface ProtoError {
  name: string;
  code: string;
  message: string;
  data_json?: string;
}

export interface ProtoOutput {
  output?: { request_id: string; index: number; seed: number; width: number; height: number; png: Buffer }[];
  error?: string;
  errors?: Record<string, ProtoError>;
  trajectory_latents?: { request_id: string; shape: number[]; data: Buffer }[];
  trajectory_timesteps?: { request_id: string; timesteps: number[] }[];
  metrics?: Record<string, number>;
}

export interface ProtoGenerateReply {
  outputs: ProtoOutput[];
}

export type ProtoGenerateEvent =
  | { event?: "progress"; progress: { request_id: string; step: number; total_steps: number }; result?: undefined }
  | { event?: "result"; result: ProtoGenerateReply; progress?: undefined };

export interface ProtoRpcRequest {
  method: string;
  args_json?: string;
  kwargs_json?: string;
  unique_reply_rank?: number;
}

export interface ProtoHealthReply {
  ready: boolean;
  reason: string;
  ranks: number;
  in_flight: number;
  queued: number;
}

const unset = <T>(v: T | null | undefined): T | undefined => (v === null ? undefined : v);

/**
 * A request dict (`toDict()`) as a proto message; null fields are left unset. For custom gRPC clients that
 * hold dicts; this package's own gRPC executor and server convert requests directly (protocol/request-codec.ts).
 */
export function requestToProto(d: Required<OmniDiffusionRequestDict>): ProtoRequest {
  return {
    request_id: d.request_id ?? "",
    prompt: d.prompt,
    negative_prompt: unset(d.negative_prompt),
    height: unset(d.height),
    width: unset(d.width),
    num_inference_steps: unset(d.num_inference_steps),
    guidance_scale: unset(d.guidance_scale),
    guidance_rescale: unset(d.guidance_rescale),
    seed: unset(d.seed),
    num_outputs_per_prompt: unset(d.num_outputs_per_prompt),
    scheduler: unset(d.scheduler),
    return_trajectory_latents: d.return_trajectory_latents ?? false,
    return_trajectory_timesteps: d.return_trajectory_timesteps ?? false,
    // The JSON dict carries the PNGs as base64; proto carries the same PNG bytes raw.
    image: d.image ? Buffer.from(d.image, "base64") : undefined,
    mask_image: d.mask_image ? Buffer.from(d.mask_image, "base64") : undefined,
    strength: unset(d.strength),
    vae: unset(d.vae),
    model: unset(d.model),
    loras: d.loras ?? [],
    ...Object.fromEntries(PROTO_SDXL_SCALARS.map((k) => [k, unset(d[k])])),
    ...Object.fromEntries(PROTO_SDXL_PAIRS.map((k) => [k, d[k] ? [...d[k]] : []])),
  };
}

/** A proto request back to the wire dict `OmniDiffusionRequest.fromDict` validates (the direct way: `requestFromProtoMessage`). */
export function requestFromProto(m: ProtoRequest): Record<string, unknown> {
  const d: Record<string, unknown> = { prompt: m.prompt };
  if (m.request_id) d.request_id = m.request_id;
  for (const k of ["negative_prompt", "height", "width", "num_inference_steps", "guidance_scale", "guidance_rescale", "seed", "num_outputs_per_prompt", "scheduler", "vae", "model"] as const) {
    if (m[k] !== undefined && m[k] !== null) d[k] = m[k];
  }
  if (m.return_trajectory_latents) d.return_trajectory_latents = true;
  if (m.return_trajectory_timesteps) d.return_trajectory_timesteps = true;
  // proto-loader's `defaults: true` fills unset bytes with an empty Buffer: empty means "no image".
  for (const k of ["image", "mask_image"] as const) if (m[k]?.length) d[k] = Buffer.from(m[k]!).toString("base64");
  if (m.strength !== undefined && m.strength !== null) d.strength = m.strength;
  if (m.loras?.length) d.loras = m.loras.map((l) => ({ name: l.name, scale: l.scale }));
  for (const k of PROTO_SDXL_SCALARS) if (m[k] !== undefined && m[k] !== null) d[k] = m[k];
  for (const k of PROTO_SDXL_PAIRS) if (m[k]?.length) d[k] = [...m[k]!];
  return d;
}

function errorToProto(err: OmniError): ProtoError {
  const s = serializeError(err);
  return { name: s.name, code: s.code, message: s.message, data_json: JSON.stringify(s.data ?? {}) };
}

function errorFromProto(e: ProtoError): OmniError {
  return deserializeError({ name: e.name, code: e.code, message: e.message, data: e.data_json ? (JSON.parse(e.data_json) as Record<string, unknown>) : {} });
}

/** A DiffusionOutput as a proto message (PNG bytes, raw float32 latents). */
export function outputToProto(out: DiffusionOutput): ProtoOutput {
  return {
    output: out.output.map((img) => ({ request_id: img.requestId, index: img.index, seed: img.seed, width: img.width, height: img.height, png: pngOf(img) })),
    error: out.error ?? undefined,
    errors: Object.fromEntries(Object.entries(out.errors).map(([id, e]) => [id, errorToProto(e)])),
    trajectory_latents: out.trajectoryLatents?.map((t) => ({ request_id: t.requestId, shape: t.shape, data: Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength) })) ?? [],
    trajectory_timesteps: out.trajectoryTimesteps?.map((t) => ({ request_id: t.requestId, timesteps: t.timesteps })) ?? [],
    metrics: Object.fromEntries(Object.entries(out.metrics).filter((e): e is [string, number] => e[1] !== undefined)),
  };
}

/** A proto output back to a DiffusionOutput (images keep their PNG, decoded lazily; errors rebuilt into their classes). */
export function outputFromProto(m: ProtoOutput): DiffusionOutput {
  const lat = (m.trajectory_latents ?? []).map((t) => {
    const data = new Float32Array(t.data.byteLength / 4);
    new Uint8Array(data.buffer).set(t.data);
    return { requestId: t.request_id, shape: t.shape, data };
  });
  const ts = (m.trajectory_timesteps ?? []).map((t) => ({ requestId: t.request_id, timesteps: t.timesteps }));
  return new DiffusionOutput({
    // Kept as PNG: decoded only if someone reads the pixels, sent on unchanged otherwise.
    // A peer that leaves width/height unset (proto3 zero) gets the PNG's own size.
    output: (m.output ?? []).map((o, i) => {
      const size = o.width && o.height ? o : pngSize(o.png, `output.${i}`);
      return lazyPngImage(o.png, size.width, size.height, { requestId: o.request_id, index: o.index, seed: o.seed }, `output.${i}`);
    }),
    error: m.error || null,
    errors: Object.fromEntries(Object.entries(m.errors ?? {}).map(([id, e]) => [id, errorFromProto(e)])),
    trajectoryLatents: lat.length ? lat : null,
    trajectoryTimesteps: ts.length ? ts : null,
    metrics: m.metrics ?? {},
  });
}

