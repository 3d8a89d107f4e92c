import type { ZodError } from "zod";
import { OmniError, ValidationError } from "../../errors/omni-error.js";
import { fastifyClientError, httpStatusOf } from "../shared/http-errors.js";
import { isPublicError } from "../shared/public-error.js";

/** The error body every OpenAI API answers with. */
export interface OpenAIErrorBody {
  error: {
    message: string;
    type: string;
    param: string | null;
    code: string | null;
  };
}

/** An error ready to send: status, OpenAI-shaped body, extra headers. */
export interface HttpErrorResponse {
  statusCode: number;
  body: OpenAIErrorBody;
}

/** Engine field names (camelCase) → the request parameter a client sent. Maps: a field can be a client's key ("constructor"). */
const PARAM_OF_FIELD: ReadonlyMap<string, string> = new Map(Object.entries({
  numInferenceSteps: "num_inference_steps",
  numOutputsPerPrompt: "n",
  guidanceScale: "guidance_scale",
  guidanceRescale: "guidance_rescale",
  negativePrompt: "negative_prompt",
  width: "size",
  height: "size",
}));

/** fastify's client-error codes → the OpenAI error `code` a client sees. */
const OPENAI_CODE_OF_FASTIFY: ReadonlyMap<string, string> = new Map(Object.entries({
  FST_ERR_CTP_BODY_TOO_LARGE: "request_too_large",
  FST_ERR_CTP_INVALID_MEDIA_TYPE: "unsupported_media_type",
  FST_ERR_CTP_EMPTY_JSON_BODY: "invalid_json",
  FST_ERR_CTP_INVALID_JSON_BODY: "invalid_json",
}));

function typeFor(status: number): string {
  if (status === 429) return "rate_limit_error";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}

/**
 * A 4xx ValidationError with an OpenAI `param` and `code`. `status` 422 marks a body that does not match
 * the API schema; 400 a well-formed value the server cannot serve; 404/413/415 what they say.
 */
export function requestError(status: number, message: string, param: string | null, code: string): ValidationError {
  return new ValidationError(message, { statusCode: status, field: param ?? undefined, data: { openaiCode: code } });
}

/** A 422 for a body that does not match its route's schema (the app's validator), naming the first bad field. */
export function schemaError(err: ZodError): ValidationError {
  const describe = (i: ZodError["issues"][number]) => {
    const path = i.path.map(String).join(".");
    if (i.code === "unrecognized_keys") return { param: i.keys[0] ?? null, code: "unknown_parameter", text: `Unknown parameter: '${i.keys.join("', '")}'.` };
    if (i.code === "invalid_type" && /received undefined$/.test(i.message)) {
      return { param: path, code: "missing_required_parameter", text: `Missing required parameter: '${path}'.` };
    }
    if (!path) return { param: null, code: "invalid_type", text: `The request body must be a JSON object (${i.message}).` };
    return { param: path, code: i.code === "invalid_type" ? "invalid_type" : "invalid_value", text: `Invalid value for '${path}': ${i.message}.` };
  };
  const all = err.issues.map(describe);
  const first = all[0] ?? { param: null, code: "invalid_value", text: "Invalid request body." };
  return requestError(422, all.map((d) => d.text).join(" "), first.param, first.code);
}

/**
 * Maps anything thrown while serving a request to a status and an OpenAI error body. OmniErrors keep their
 * `statusCode`; `code` is the request-level code when one was set, else the OmniError code without its
 * `OMNI_ERR_` prefix, lower-cased (`OMNI_ERR_QUEUE_FULL` → `queue_full`). fastify's own 4xx errors (bad JSON,
 * body too large, wrong content type) keep their status. Anything else, and any OmniError with status 500
 * (an unexpected failure: its message can carry onnxruntime paths and node names), is a 500 whose message
 * only names `requestId`: the details stay in the log.
 */
export function toHttpError(err: unknown, limits: { maxBodyBytes: number }, requestId: string): HttpErrorResponse {
  const internal = (code: string): HttpErrorResponse => ({
    statusCode: 500,
    body: { error: { message: `Internal server error (request ${requestId}); the details are in the server log.`, type: "server_error", param: null, code } },
  });
  if (err instanceof OmniError) {
    if (!isPublicError(err)) return internal(err.code.replace(/^OMNI_ERR_/, "").toLowerCase());
    const status = httpStatusOf(err);
    const field = typeof err.data.field === "string" ? err.data.field : null;
    const param = field ? (PARAM_OF_FIELD.get(field) ?? field) : null;
    // `reason` is core/limits.ts' request-level code (`limit_exceeded`, `invalid_size`, ...).
    const reason = err.data.openaiCode ?? err.data.reason;
    const code = typeof reason === "string" ? reason : err.code.replace(/^OMNI_ERR_/, "").toLowerCase();
    return { statusCode: status, body: { error: { message: err.message, type: typeFor(status), param, code } } };
  }
  const fce = fastifyClientError(err, limits.maxBodyBytes);
  if (fce) {
    const fastifyCode = String(fce.data.fastifyCode);
    const code = OPENAI_CODE_OF_FASTIFY.get(fastifyCode) ?? (fce.statusCode === 400 ? "invalid_json" : "invalid_request");
    return { statusCode: fce.statusCode, body: { error: { message: fce.message, type: typeFor(fce.statusCode), param: null, code } } };
  }
  return internal("internal");
}
