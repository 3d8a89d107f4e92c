import type { FastifyRequest } from "fastify";
import { resizeRgbAsync } from "../../utils/png-decode-pool.js";
import { z } from "zod";
import type { MaskImage, RgbImage } from "../../utils/png.js";
import { OmniError, ValidationError } from "../../errors/omni-error.js";
import { decodeUpload, openAIMask, resizeMask, serverUploadCap, stepsRun, type DecodedUpload, type UploadCap } from "../shared/edit-images.js";
import { imageGenerationBodySchema, checkEditLimits, toImageRequest, type ParsedImageRequest } from "./image-request.js";
import type { ModelCard } from "../app/model-card.js";
import { requestError, schemaError } from "../app/error-mapping.js";
import type { ServerLimits } from "../app/server-options.js";

/**
 * Text fields of `POST /v1/images/edits`: those of generations, plus `input_fidelity` (accepted and ignored,
 * as for `quality`) and our `strength` extension (img2img, (0, 1]). Unknown fields are refused, as for
 * generations.
 */
export const imageEditFieldsSchema = imageGenerationBodySchema
  .extend({
    input_fidelity: z.enum(["high", "low"]).nullish(),
    strength: z.number().gt(0).max(1).nullish(),
  })
  .strict();

/** Fields a multipart form carries as text that the schema wants as numbers or booleans. */
const NUMERIC = new Set(["n", "partial_images", "output_compression", "num_inference_steps", "guidance_scale", "guidance_rescale", "seed", "strength"]);
const BOOLEAN = new Set(["stream"]);

/** Multipart sends every value as text: numbers and booleans are read back, anything else left for zod to name. */
function typedField(name: string, value: string): unknown {
  const v = value.trim();
  if (NUMERIC.has(name) && /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(v)) return Number(v);
  // Python clients that format values with str() send "True"/"False".
  if (BOOLEAN.has(name) && /^(true|false)$/i.test(v)) return v.toLowerCase() === "true";
  return value;
}

/** A validated edit: the generation-shaped request plus the decoded image and mask. */
export interface ParsedEditRequest extends ParsedImageRequest {
  init: ParsedImageRequest["init"] & { image: RgbImage; mask: MaskImage | null; strength: number | null };
}

interface EditForm {
  fields: Record<string, unknown>;
  images: { field: string; bytes: Buffer }[];
  mask: Buffer | null;
}

/** Reads the multipart form; a file over `maxUploadBytes` is a 413 naming its field, a malformed body a 400. */
async function readForm(req: FastifyRequest, maxUploadBytes: number): Promise<EditForm> {
  const form: EditForm = { fields: {}, images: [], mask: null };
  if (!req.isMultipart()) {
    throw requestError(415, "Send POST /v1/images/edits as multipart/form-data (fields image, prompt, optional mask).", null, "unsupported_media_type");
  }
  let field: string | null = null;
  try {
    for await (const part of req.parts()) {
      field = part.fieldname;
      if (part.type === "field") {
        if (part.fieldname in form.fields) throw requestError(400, `The field '${part.fieldname}' was sent more than once.`, part.fieldname, "invalid_value");
        // busboy cuts an oversized value silently: refuse it rather than use a truncated prompt.
        if (part.valueTruncated) throw requestError(413, `The field '${part.fieldname}' is longer than a form field may be.`, part.fieldname, "request_too_large");
        form.fields[part.fieldname] = typedField(part.fieldname, String(part.value));
        continue;
      }
      const bytes = await part.toBuffer();
      if (part.fieldname === "image" || part.fieldname === "image[]") form.images.push({ field: part.fieldname, bytes });
      else if (part.fieldname === "mask") {
        if (form.mask) throw requestError(400, "Send one mask.", "mask", "invalid_value");
        form.mask = bytes;
      } else throw requestError(422, `Unknown file parameter: '${part.fieldname}'; send 'image' and optionally 'mask'.`, part.fieldname, "unknown_parameter");
    }
  } catch (err) {
    throw formError(err, field, maxUploadBytes);
  }
  return form;
}

/**
 * What a failure while reading the form answers: our own errors as they are; @fastify/multipart's limits
 * (file size, part counts: 413) with our message; anything else (busboy's parse errors on a malformed body,
 * a missing boundary) is the client's fault, a 400, never a 500.
 */
function formError(err: unknown, field: string | null, maxUploadBytes: number): Error {
  if (err instanceof OmniError) return err;
  const e = err as { code?: unknown; statusCode?: unknown; message?: unknown };
  if (e.code === "FST_REQ_FILE_TOO_LARGE") return requestError(413, `The file '${field}' is larger than the limit of ${maxUploadBytes} bytes.`, field, "request_too_large");
  if (typeof e.statusCode === "number" && e.statusCode === 413) return requestError(413, `The multipart form has too many parts (${String(e.message)}).`, null, "request_too_large");
  return requestError(400, `The multipart/form-data body could not be read: ${String(e.message)}.`, null, "invalid_multipart");
}

/** Decodes an upload (off the event loop), turning its ValidationError into the OpenAI 400 naming the parameter. */
async function decoded(bytes: Buffer, param: string, cap: UploadCap, fit?: { width: number; height: number }): Promise<DecodedUpload> {
  try {
    return await decodeUpload(bytes, param, cap, undefined, fit);
  } catch (err) {
    if (err instanceof ValidationError) throw requestError(400, `${err.message}.`, param, err.data.reason === "limit_exceeded" ? "limit_exceeded" : "invalid_image");
    throw err;
  }
}

/**
 * Reads and validates an edit request: the form's text fields against {@link imageEditFieldsSchema} (422
 * naming the field), the limits as for generations (400), one PNG `image` (or `image[]`), an optional PNG
 * `mask` of the same size in OpenAI's convention (transparent = repaint; see `openAIMask`). Without a mask,
 * an image that has transparent pixels uses them as its mask (OpenAI's DALL·E 2 rule); a fully opaque one is
 * edited as a whole (img2img). `size` defaults to the image's size; another size resizes image and mask.
 */
export async function parseEditRequest(req: FastifyRequest, limits: ServerLimits, model: ModelCard): Promise<ParsedEditRequest> {
  const form = await readForm(req, limits.maxUploadBytes);
  // An empty `model` is "not set" (Open WebUI sends its edit model setting even when it is blank).
  if (form.fields.model === "") delete form.fields.model;
  const r = imageEditFieldsSchema.safeParse(form.fields);
  if (!r.success) throw schemaError(r.error);
  const body = r.data;
  const [first, ...rest] = form.images;
  if (!first) throw requestError(400, "Missing required parameter: 'image' (a PNG file).", "image", "missing_required_parameter");
  if (rest.length > 0) throw requestError(400, `This server edits one image per request; ${form.images.length} were sent.`, first.field, "invalid_value");
  const cap = serverUploadCap(limits, model);
  const image = await decoded(first.bytes, "image", cap, fitOf(body, limits, model));
  const maskUpload = form.mask ? await decoded(form.mask, "mask", cap) : null;
  if (maskUpload && (maskUpload.width !== image.width || maskUpload.height !== image.height)) {
    throw requestError(400, `The mask is ${maskUpload.width}x${maskUpload.height} but the image is ${image.width}x${image.height}; they must be the same size.`, "mask", "invalid_image");
  }
  const size = body.size == null || body.size === "auto" ? `${image.width}x${image.height}` : body.size;
  const parsed = toImageRequest({ ...body, size }, limits, model);
  checkEditLimits(parsed, model);
  const { width, height } = parsed.init as { width: number; height: number };
  const mask = maskUpload ? openAIMask(maskUpload) : image.transparent ? openAIMask(image) : null;
  const edit = { image: await resizeRgbAsync(image.rgb, width, height), mask: mask ? resizeMask(mask, width, height) : null, strength: body.strength ?? null };
  return { ...parsed, steps: stepsRun(parsed.steps, edit), init: { ...parsed.init, ...edit } };
}

/**
 * The size an edit runs at when its `size` says so before the image is decoded (not "auto"): the decode thread
 * resizes to it, so only that many pixels reach the event loop's heap (a 2048² upload for a 32² edit: one
 * mark-compact GC per upload on serve's thread was the cause of /health stalls). Undefined when unknown or
 * invalid (the error then comes later, in its usual order).
 */
function fitOf(body: z.infer<typeof imageEditFieldsSchema>, limits: ServerLimits, model: ModelCard): { width: number; height: number } | undefined {
  if (body.size == null || body.size === "auto") return undefined;
  try {
    const { width, height } = toImageRequest(body, limits, model).init as { width: number; height: number };
    return { width, height };
  } catch {
    return undefined;
  }
}
