import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { DiffusionOutput } from "../../core/output.js";
import { UnhealthyError, ValidationError } from "../../errors/omni-error.js";
import { MAX_REQUESTS_PER_CALL, PATHS, SAGEMAKER_ATTRIBUTES_HEADER, errorBody, generateBodySchema, rpcBodySchema } from "../../protocol/wire.js";
import { zodToValidationError } from "../../utils/zod-error.js";
import { publicOutput } from "../shared/public-error.js";
import { parseTimeoutMs, requireApiKey } from "./fastify-app.js";
import { healthBody, rpcCallFromWire, type WorkerService } from "./worker-service.js";

/** SageMaker's payload limit for real-time endpoints, bytes. */
export const SAGEMAKER_MAX_PAYLOAD_BYTES = 6 * 1024 * 1024;

const rpcInvocationSchema = z.object({ rpc: rpcBodySchema }).strict();
const healthInvocationSchema = z.object({ health: z.object({}).strict() }).strict();
const bareArraySchema = z.array(z.unknown()).min(1).max(MAX_REQUESTS_PER_CALL);

/**
 * The SageMaker bring-your-own-container contract on the worker's SageMaker port:
 * `GET /ping` (200 when ready, else 503) and `POST /invocations`, JSON in and out. An invocation body is
 * one of
 * - `{"requests": [...]}` → `{"outputs": [...]}` (as `POST /v1/diffusion/generate`);
 * - `{"rpc": {"method", "args", "kwargs", "unique_reply_rank", "timeout"}}` → `{"result"}`;
 * - `{"health": {}}` → `{"status": "ok", ...}`, or a 503;
 * - a bare array of request dicts → one merged DiffusionOutput dict (the quick-start's "Cloud Service" shape).
 *
 * SageMaker passes `X-Amzn-SageMaker-Custom-Attributes` through; `timeout_ms=<ms>` in it is the client's
 * remaining deadline. SageMaker authenticates callers itself (IAM) and does not forward `Authorization`, so a
 * port behind it trusts its network (`trustNetwork`); otherwise `/invocations` needs `apiKey` when one is set,
 * exactly like the HTTP API. `/ping` is always open (SageMaker's health check sends no key).
 */
export function registerSageMakerApi(app: FastifyInstance, service: WorkerService, opts: { healthTimeoutMs: number; apiKey?: string; trustNetwork?: boolean }): void {
  if (opts.apiKey && !opts.trustNetwork) {
    const check = requireApiKey(opts.apiKey);
    app.addHook("onRequest", async (req, reply) => {
      if (req.url.split("?")[0] !== PATHS.ping) return check(req, reply);
    });
  }
  app.get(PATHS.ping, async (_req, reply) => {
    const h = await service.health(opts.healthTimeoutMs);
    if (h.ready) return { status: "ok" };
    return reply.code(503).header("retry-after", "1").send({ status: "unavailable", reason: h.reason, ...errorBody(new UnhealthyError(h.reason)) });
  });

  app.post(PATHS.invocations, async (req, reply) => {
    const timeoutMs = parseTimeoutMs(customAttribute(req.headers[SAGEMAKER_ATTRIBUTES_HEADER], "timeout_ms"), "timeout_ms");
    const shown = (o: DiffusionOutput) => publicOutput(o, (err, requestId) => req.log.error({ err, requestId }, "request failed"));
    const body = req.body;
    if (Array.isArray(body)) {
      const outputs = await service.generate(parse(bareArraySchema, body), { timeoutMs });
      return DiffusionOutput.merge(outputs.map(shown)).toDict();
    }
    const kind = body && typeof body === "object" ? (["requests", "rpc", "health"] as const).find((k) => k in body) : undefined;
    switch (kind) {
      case "requests": {
        const { requests } = parse(generateBodySchema, body);
        return { outputs: (await service.generate(requests, { timeoutMs })).map((o) => shown(o).toDict()) };
      }
      case "rpc": {
        const { rpc } = parse(rpcInvocationSchema, body);
        return { result: (await service.rpc(rpcCallFromWire(rpc, timeoutMs))) ?? null };
      }
      case "health": {
        parse(healthInvocationSchema, body);
        const h = await service.health(opts.healthTimeoutMs);
        if (!h.ready) throw new UnhealthyError(h.reason);
        return healthBody(h);
      }
      default:
        return reply.code(400).send(errorBody(new ValidationError('an invocation is {"requests": [...]}, {"rpc": {...}}, {"health": {}} or an array of request dicts', { field: "body" })));
    }
  });
}

function parse<S extends z.ZodType>(schema: S, body: unknown): z.output<S> {
  const r = schema.safeParse(body);
  if (!r.success) throw zodToValidationError(r.error, "invocation body");
  return r.data;
}

/** `key=value` out of SageMaker's comma-separated custom attributes. */
function customAttribute(header: string | string[] | undefined, key: string): string | undefined {
  const v = Array.isArray(header) ? header[0] : header;
  for (const part of (v ?? "").split(",")) {
    const [k, val] = part.split("=", 2).map((s) => s.trim());
    if (k === key) return val;
  }
  return undefined;
}
