import Fastify, { type FastifyInstance, type FastifyReply, type FastifyServerOptions } from "fastify";
import type { ZodType } from "zod";
import { OmniError, UnknownMethodError, ValidationError, toOmniError } from "../../errors/omni-error.js";
import { zodToValidationError } from "../../utils/zod-error.js";
import { errorBody } from "../../executors/shared/wire.js";

/** Options shared by the worker's fastify apps. */
export interface WorkerAppOptions {
  /** Largest request body, bytes; larger ones get a 413. */
  bodyLimit: number;
  logger?: FastifyServerOptions["logger"];
}

/**
 * A fastify instance with what every worker front end needs: zod schemas as route validators (compiled
 * once, failing with a 400 ValidationError naming the field), every error answered as
 * `{"error": {name, code, message, data}}` with its status (and `Retry-After` when the error carries
 * `data.retryAfterMs`), fastify's own 4xx (bad JSON, body too large, wrong content type) kept as 4xx,
 * and a JSON 404 for unknown routes.
 */
export function createWorkerApp(opts: WorkerAppOptions): FastifyInstance {
  const app = Fastify({ logger: opts.logger ?? false, bodyLimit: opts.bodyLimit, onProtoPoisoning: "error", onConstructorPoisoning: "error" });
  // JSON only: a text body must be a 415, not a string that fails the schema.
  app.removeContentTypeParser("text/plain");
  app.setValidatorCompiler(({ schema }) => {
    const zod = schema as unknown as ZodType;
    return (data: unknown) => {
      const r = zod.safeParse(data);
      return r.success ? { value: r.data } : { error: zodToValidationError(r.error, "request body") };
    };
  });
  app.setErrorHandler((err, req, reply) => {
    const e = asOmniError(err, opts.bodyLimit);
    if (e.statusCode >= 500) req.log.error({ err: e }, "request failed");
    return sendError(reply, e);
  });
  app.setNotFoundHandler((req, reply) => sendError(reply, new UnknownMethodError(`no route ${req.method} ${req.url.split("?")[0]}`, { data: { method: req.method } })));
  return app;
}

/** Answers with an OmniError's status and body (and `Retry-After`). */
export function sendError(reply: FastifyReply, e: OmniError): FastifyReply {
  const retryAfter = e.data.retryAfterMs;
  if (typeof retryAfter === "number") reply.header("retry-after", String(Math.max(1, Math.ceil(retryAfter / 1000))));
  if (e.statusCode === 401) reply.header("www-authenticate", "Bearer");
  const status = e.statusCode >= 400 && e.statusCode <= 599 ? e.statusCode : 500;
  return reply.code(status).send(errorBody(e));
}

function asOmniError(err: unknown, bodyLimit: number): OmniError {
  if (err instanceof OmniError) return err;
  const fe = err as { statusCode?: unknown; code?: unknown; message?: unknown };
  if (typeof fe?.statusCode === "number" && fe.statusCode >= 400 && fe.statusCode < 500) {
    const messages: Record<string, string> = {
      FST_ERR_CTP_BODY_TOO_LARGE: `the request body is larger than the limit of ${bodyLimit} bytes`,
      FST_ERR_CTP_INVALID_MEDIA_TYPE: "unsupported Content-Type: send the body as application/json",
      FST_ERR_CTP_EMPTY_JSON_BODY: "the request body is empty; send a JSON object",
      FST_ERR_CTP_INVALID_JSON_BODY: `the request body is not valid JSON: ${String(fe.message)}`,
    };
    const code = typeof fe.code === "string" ? fe.code : "";
    return new ValidationError(messages[code] ?? String(fe.message), { field: "body", statusCode: fe.statusCode, data: { fastifyCode: code } });
  }
  return toOmniError(err);
}

/** Parses a timeout header/attribute value in ms; a malformed one is a 400. */
export function parseTimeoutMs(value: string | string[] | undefined, name: string): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined || v === "") return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 86_400_000) throw new ValidationError(`${name} must be an integer number of ms in [1, 86400000], got "${v}"`, { field: name });
  return n;
}
