/**
 * Requests on the wire, converted directly to and from {@link OmniDiffusionRequest}: the JSON dict (HTTP,
 * SageMaker, the queue's jobs; images as base64 PNG) and the proto message (gRPC; images as PNG bytes).
 * Each form is parsed once by the request's one schema (core/request.ts), with errors naming the wire's
 * fields; proto bytes go straight to the PNG decoder, never through a base64 dict.
 */
import type { PngDecodeOptions } from "../utils/png.js";
import { encodeMaskPng, pngOf } from "../utils/png.js";
import {
  OmniDiffusionRequest,
  WIRE_NAMES,
  decodeImageField,
  decodeMaskField,
  parseRequestInit,
  requestOfParsed,
  wireNameOf,
} from "../core/request.js";
import type { ProtoRequest } from "./proto-codec.js";
import { ValidationError } from "../errors/omni-error.js";

/** Options of the decoding side: `images` bounds the decode of `image` and `mask_image` (a server's upload cap). */
export interface RequestDecodeOptions {
  images?: Omit<PngDecodeOptions, "field">;
}

/** A request's wire dict, as `toDict()` writes it (every field present, unset ones null). */
export type RequestDict = ReturnType<OmniDiffusionRequest["toDict"]>;

/** The wire dict of a request (encodes its images: build it once per send, not once per attempt). */
export function requestToDict(r: OmniDiffusionRequest): RequestDict {
  return r.toDict();
}

/** Validates a wire dict (parsed once, errors naming its snake_case fields) and builds the request. */
export function requestFromDict(dict: unknown, opts: RequestDecodeOptions = {}): OmniDiffusionRequest {
  return OmniDiffusionRequest.fromDict(dict, opts);
}

const unset = <T>(v: T | null | undefined): T | undefined => (v === null ? undefined : v);

/** A request as a proto message: null fields unset, the image's PNG bytes raw (the ones it carries, else one encode). */
export function requestToProtoMessage(r: OmniDiffusionRequest): ProtoRequest {
  return {
    request_id: r.requestId,
    prompt: r.prompt,
    negative_prompt: unset(r.negativePrompt),
    height: unset(r.height),
    width: unset(r.width),
    num_inference_steps: unset(r.numInferenceSteps),
    guidance_scale: unset(r.guidanceScale),
    guidance_rescale: unset(r.guidanceRescale),
    seed: unset(r.seed),
    num_outputs_per_prompt: r.numOutputsPerPrompt,
    scheduler: unset(r.scheduler),
    return_trajectory_latents: r.returnTrajectoryLatents,
    return_trajectory_timesteps: r.returnTrajectoryTimesteps,
    image: r.image ? pngOf(r.image) : undefined,
    mask_image: r.mask ? encodeMaskPng(r.mask) : undefined,
    strength: unset(r.strength),
    vae: unset(r.vae),
    model: unset(r.model),
    loras: r.loras.map((l) => ({ name: l.name, scale: l.scale })),
    prompt_2: unset(r.prompt2),
    negative_prompt_2: unset(r.negativePrompt2),
    original_size: r.originalSize ? [...r.originalSize] : [],
    crops_coords_top_left: r.cropsCoordsTopLeft ? [...r.cropsCoordsTopLeft] : [],
    target_size: r.targetSize ? [...r.targetSize] : [],
    aesthetic_score: unset(r.aestheticScore),
    negative_aesthetic_score: unset(r.negativeAestheticScore),
    denoising_end: unset(r.denoisingEnd),
  };
}

/** Proto fields copied as they are when set (proto3 leaves an unset optional field undefined or null). */
const PROTO_SCALARS = ["negativePrompt", "height", "width", "numInferenceSteps", "guidanceScale", "guidanceRescale", "seed", "numOutputsPerPrompt", "scheduler", "strength", "vae", "model",
  "prompt2", "negativePrompt2", "aestheticScore", "negativeAestheticScore", "denoisingEnd"] as const;
/** Proto repeated fields that stand for a pair: empty is unset (proto3 has no unset repeated field). */
const PROTO_PAIRS = ["originalSize", "cropsCoordsTopLeft", "targetSize"] as const;

/**
 * A proto message as a request, parsed once (errors name the proto's snake_case fields, as the dict's do);
 * its `image`/`mask_image` bytes are decoded as PNG directly, after the other fields passed.
 */
export function requestFromProtoMessage(m: ProtoRequest, opts: RequestDecodeOptions = {}): OmniDiffusionRequest {
  const fields: Record<string, unknown> = { prompt: m.prompt };
  if (m.request_id) fields.requestId = m.request_id;
  for (const f of PROTO_SCALARS) {
    const v = m[WIRE_NAMES[f] as keyof ProtoRequest];
    if (v !== undefined && v !== null) fields[f] = v;
  }
  if (m.return_trajectory_latents) fields.returnTrajectoryLatents = true;
  if (m.return_trajectory_timesteps) fields.returnTrajectoryTimesteps = true;
  // proto3 has no unset repeated field: empty means none.
  if (m.loras?.length) fields.loras = m.loras.map((l) => ({ name: l.name, scale: l.scale }));
  for (const f of PROTO_PAIRS) {
    const v = m[WIRE_NAMES[f] as keyof ProtoRequest] as number[] | undefined;
    if (v?.length) fields[f] = [...v]; // a length other than 2 is refused by the schema, naming the field
  }
  const d = parseRequestInit(fields, "request", wireNameOf);
  // proto-loader's `defaults: true` fills unset bytes with an empty Buffer: empty means "no image".
  if (m.image?.length) d.image = decodeImageField(m.image, opts.images);
  if (m.mask_image?.length) d.mask = decodeMaskField(m.mask_image, opts.images);
  return requestOfParsed(d);
}
