import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import type { ZodError } from "zod";
import { ValidationError } from "../../errors/omni-error.js";
import { toHttpError } from "../app/error-mapping.js";

/** One entry of Replicate's `invalid_fields`. */
export interface InvalidField {
  type: string;
  field: string;
  description: string;
}

/** Replicate's error body: `{title, detail, status}`, plus `invalid_fields` on a 422. */
export interface ReplicateErrorBody {
  title: string;
  detail: string;
  status: number;
  invalid_fields?: InvalidField[];
}

const TITLES: Record<number, string> = {
  400: "Bad request",
  401: "Unauthenticated",
  403: "Forbidden",
  404: "Not found",
  408: "Request timeout",
  413: "Request too large",
  415: "Unsupported media type",
  422: "Input validation failed",
  429: "Too many requests",
  499: "Client closed request",
  502: "Bad gateway",
  503: "Service unavailable",
  504: "Gateway timeout",
};

/** A client error of this API: status, message, and the field it names (`input.width`, `webhook`, ...). */
export function predictionError(status: number, message: string, field: string | null, type = "invalid_value"): ValidationError {
  return new ValidationError(message, { statusCode: status, field: field ?? undefined, data: { openaiCode: type } });
}

/** A body that does not match the schema: a 422 naming every bad field (unknown input fields by name). */
export function predictionSchemaError(err: ZodError): ValidationError {
  const fields: InvalidField[] = err.issues.flatMap((i) => {
    const path = i.path.map(String).join(".");
    if (i.code === "unrecognized_keys") {
      return i.keys.map((k) => ({ type: "additional_property_not_allowed", field: path ? `${path}.${k}` : k, description: `Additional property ${k} is not allowed` }));
    }
    if (i.code === "invalid_type" && /received undefined$/.test(i.message)) return [{ type: "required", field: path, description: `${path} is required` }];
    return [{ type: i.code, field: path || "body", description: i.message }];
  });
  const detail = fields.map((f) => `- ${f.field}: ${f.description}`).join("\n");
  return new ValidationError(detail, { statusCode: 422, field: fields[0]?.field, data: { invalidFields: fields, openaiCode: fields[0]?.type ?? "invalid_value" } });
}

/** The Replicate-shaped answer of any error thrown on a predictions route (the app's mapping decides status and message). */
export function replicateErrorBody(err: unknown, requestId: string, bodyLimit: number): ReplicateErrorBody {
  const { statusCode, body } = toHttpError(err, { maxBodyBytes: bodyLimit }, requestId);
  const out: ReplicateErrorBody = { title: TITLES[statusCode] ?? (statusCode >= 500 ? "Internal server error" : "Error"), detail: body.error.message, status: statusCode };
  if (statusCode === 422) {
    const listed = err instanceof ValidationError ? err.data.invalidFields : undefined;
    out.invalid_fields = Array.isArray(listed)
      ? (listed as InvalidField[])
      : [{ type: body.error.code ?? "invalid_value", field: body.error.param ?? "input", description: body.error.message }];
  }
  return out;
}

/** The plugin's error handler: Replicate's shape, with the app's headers for 401 and 429. */
export function replicateErrorHandler(bodyLimit: number, retryAfter: () => number) {
  return (err: FastifyError, req: FastifyRequest, reply: FastifyReply) => {
    const body = replicateErrorBody(err, req.id, bodyLimit);
    if (body.status >= 500) req.log.error({ err, requestId: req.id }, "predictions request failed");
    else req.log.info({ status: body.status }, body.detail);
    if (body.status === 429) reply.header("retry-after", String(retryAfter()));
    if (body.status === 401) reply.header("www-authenticate", 'Bearer realm="omni-diffusion"').header("connection", "close");
    return reply.code(body.status).type("application/json").send(body);
  };
}
