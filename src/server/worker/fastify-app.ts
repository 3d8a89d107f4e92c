import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from "fastify";
import { OmniError, UnknownMethodError, ValidationError, toOmniError } from "../../errors/omni-error.js";
import { newRequestId } from "../../core/request.js";
import { zodToValidationError } from "../../utils/zod-error.js";
import { errorBody } from "../../protocol/wire.js";
import { authorizationHeaders, checkApiKey } from "../shared/api-key.js";
import { hardenedServerFactory, type HttpLimits } from "../shared/http-limits.js";
import { installJsonBodyParser } from "../shared/json-body.js";
import { fastifyClientError, httpStatusOf } from "../shared/http-errors.js";
import { publicError } from "../shared/public-error.js";
import { useZodValidator } from "../shared/zod-validator.js";

/** Options shared by the worker's fastify apps. */
export interface WorkerAppOptions {
  /** Largest request body, bytes; larger ones get a 413. */
  bodyLimit: number;
  /** Timeouts, connection cap and JSON depth of the listening server. */
  http: HttpLimits;
  logger?: FastifyServerOptions["logger"];
}

/**
 * A fastify instance with what every worker front end needs: zod schemas as route validators (compiled
 * once, failing with a 400 ValidationError naming the field), every error answered as
 * `{"error": {name, code, message, data}}` with its status (and `Retry-After` when the error carries
 * `data.retryAfterMs`), fastify's own 4xx (bad JSON, body too large, wrong content type) kept as 4xx,
 * a JSON 404 for unknown routes, the shared safe JSON parser (depth, encoding, charset), the connection
 * limits of `opts.http`, an `x-request-id` on every answer, and internal (500) errors as a generic message
 * naming that id (the details go to the log).
 */
export function createWorkerApp(opts: WorkerAppOptions): FastifyInstance {
  const app = Fastify({
    logger: opts.logger ?? false,
    bodyLimit: opts.bodyLimit,
    genReqId: () => newRequestId(),
    serverFactory: hardenedServerFactory(opts.http),
  });
  // JSON only (a text body must be a 415, not a string that fails the schema), parsed by the shared safe parser.
  installJsonBodyParser(app, { maxDepth: opts.http.maxJsonDepth });
  app.addHook("onRequest", async (req, reply) => {
    reply.header("x-request-id", req.id);
  });
  useZodValidator(app, (err) => zodToValidationError(err, "request body"));
  app.setErrorHandler((err, req, reply) => {
    const e = publicError(asOmniError(err, opts.bodyLimit), req.id, (full, requestId) => req.log.error({ err: full, requestId }, "request failed"));
    if (e.statusCode >= 500) req.log.warn({ code: e.code, requestId: req.id }, e.message);
    return sendError(reply, e);
  });
  app.setNotFoundHandler((req, reply) => sendError(reply, new UnknownMethodError(`no route ${req.method} ${req.url.split("?")[0]}`, { data: { method: req.method } })));
  return app;
}

/** Answers with an OmniError's status and body (and `Retry-After`). */
export function sendError(reply: FastifyReply, e: OmniError): FastifyReply {
  const retryAfter = e.data.retryAfterMs;
  if (typeof retryAfter === "number") reply.header("retry-after", String(Math.max(1, Math.ceil(retryAfter / 1000))));
  if (e.statusCode === 401) {
    // The client is not ours: do not keep its connection (nor read the body it may still be sending).
    reply.header("www-authenticate", "Bearer").header("connection", "close");
  }
  return reply.code(httpStatusOf(e)).send(errorBody(e));
}

function asOmniError(err: unknown, bodyLimit: number): OmniError {
  if (err instanceof OmniError) return err;
  return fastifyClientError(err, bodyLimit) ?? toOmniError(err);
}

/**
 * An `onRequest` hook refusing requests without the key (401, connection closed) before their body is read.
 * Every `Authorization` header is checked, so two of them are refused.
 */
export function requireApiKey(key: string) {
  return async (req: FastifyRequest, reply: FastifyReply) => {
    const refusal = checkApiKey(authorizationHeaders(req.raw.rawHeaders), key);
    if (refusal) return sendError(reply, refusal);
  };
}

/** Parses a timeout header/attribute value in ms; a malformed one is a 400. */
export function parseTimeoutMs(value: string | string[] | undefined, name: string): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined || v === "") return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 86_400_000) throw new ValidationError(`${name} must be an integer number of ms in [1, 86400000], got "${v}"`, { field: name });
  return n;
}
