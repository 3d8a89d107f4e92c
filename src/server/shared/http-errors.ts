import { ValidationError, type OmniError } from "../../errors/omni-error.js";

/** The HTTP status an OmniError answers with, on every server: its `statusCode` when that is an error status (400–599), else 500. */
export function httpStatusOf(err: OmniError): number {
  return err.statusCode >= 400 && err.statusCode <= 599 ? err.statusCode : 500;
}

/**
 * fastify's own client errors (a body over the limit, a content type other than JSON, an empty or invalid
 * JSON body) as one ValidationError with their 4xx status, `field: "body"` and `data.fastifyCode`, so each
 * server only words the code its API uses; null for anything that is not a fastify 4xx.
 */
export function fastifyClientError(err: unknown, bodyLimit: number): ValidationError | null {
  const fe = err as { statusCode?: unknown; code?: unknown; message?: unknown } | null;
  if (typeof fe?.statusCode !== "number" || fe.statusCode < 400 || fe.statusCode >= 500) return null;
  const messages: Record<string, string> = {
    FST_ERR_CTP_BODY_TOO_LARGE: `the request body is larger than the limit of ${bodyLimit} bytes`,
    FST_ERR_CTP_INVALID_MEDIA_TYPE: "unsupported Content-Type: send the body as application/json",
    FST_ERR_CTP_EMPTY_JSON_BODY: "the request body is empty; send a JSON object",
    FST_ERR_CTP_INVALID_JSON_BODY: `the request body is not valid JSON: ${String(fe.message)}`,
  };
  const code = typeof fe.code === "string" ? fe.code : "";
  return new ValidationError((Object.hasOwn(messages, code) ? messages[code] : undefined) ?? String(fe.message), { field: "body", statusCode: fe.statusCode, data: { fastifyCode: code } });
}
