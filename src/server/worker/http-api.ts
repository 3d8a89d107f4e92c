import type { FastifyInstance } from "fastify";
import type { z } from "zod";
import type { DiffusionOutput } from "../../core/output.js";
import { UnhealthyError, toOmniError, type OmniError } from "../../errors/omni-error.js";
import { PATHS, TIMEOUT_HEADER, abortBodySchema, errorBody, generateBodySchema, rpcBodySchema, sseFrame } from "../../protocol/wire.js";
import { publicError, publicOutput } from "../shared/public-error.js";
import { parseTimeoutMs, requireApiKey } from "./fastify-app.js";
import { healthBody, rpcCallFromWire, type WorkerService } from "./worker-service.js";

/** Options of {@link registerHttpApi}. */
export interface HttpApiOptions {
  /** Required as `Authorization: Bearer <key>` on every route but `/health` (checked before the body is read). */
  apiKey?: string;
  /** Deadline of the rank pings behind `/health`, ms. */
  healthTimeoutMs: number;
}

/**
 * The worker's HTTP/JSON API (`docs/wire-protocol.md`):
 * `POST /v1/diffusion/generate` (JSON, or server-sent events with `Accept: text/event-stream`),
 * `POST /v1/diffusion/rpc`, `POST /v1/diffusion/abort`, and `GET /health` (200 ready, 503 with the reason).
 * The client's remaining deadline arrives in `x-omni-timeout-ms`.
 */
export function registerHttpApi(app: FastifyInstance, service: WorkerService, opts: HttpApiOptions): void {
  app.get(PATHS.health, async (_req, reply) => {
    const h = await service.health(opts.healthTimeoutMs);
    const body = healthBody(h);
    if (h.ready) return body;
    reply.header("retry-after", "1");
    return reply.code(503).send({ ...body, ...errorBody(new UnhealthyError(h.reason)) });
  });

  app.register(async (api) => {
    if (opts.apiKey) api.addHook("onRequest", requireApiKey(opts.apiKey));

    api.post(PATHS.generate, { schema: { body: generateBodySchema } }, async (req, reply) => {
      const { requests } = req.body as z.output<typeof generateBodySchema>;
      const log = (err: OmniError, requestId: string) => req.log.error({ err, requestId }, "request failed");
      const wire = (outputs: DiffusionOutput[]) => outputs.map((o) => publicOutput(o, log).toDict());
      const timeoutMs = parseTimeoutMs(req.headers[TIMEOUT_HEADER], TIMEOUT_HEADER);
      const valid = service.validate(requests);
      if (!String(req.headers.accept ?? "").includes("text/event-stream")) {
        const outputs = await service.run(valid, { timeoutMs });
        return { outputs: wire(outputs) };
      }
      // Streaming: progress frames while denoising, then one `result` (or `error`) frame.
      const res = reply.raw;
      const write = (event: string, data: unknown) => {
        if (!res.destroyed && !res.writableEnded) res.write(sseFrame(event, data));
      };
      // Submitted before the stream opens: a call beyond the limits is still answered with its 400.
      const pending = service.run(valid, {
        timeoutMs,
        onProgress: (p) => write("progress", { request_id: p.requestId, step: p.step, total_steps: p.totalSteps }),
      });
      reply.hijack();
      // No `connection` header: a client that sent `Connection: close` gets its socket closed after the stream.
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      try {
        const outputs = await pending;
        write("result", { outputs: wire(outputs) });
      } catch (err) {
        const e = publicError(toOmniError(err), req.id, log);
        write("error", { status: e.statusCode, ...errorBody(e) });
      } finally {
        res.end();
      }
    });

    api.post(PATHS.rpc, { schema: { body: rpcBodySchema } }, async (req) => {
      const call = rpcCallFromWire(req.body as z.output<typeof rpcBodySchema>, parseTimeoutMs(req.headers[TIMEOUT_HEADER], TIMEOUT_HEADER));
      return { result: (await service.rpc(call)) ?? null };
    });

    api.post(PATHS.abort, { schema: { body: abortBodySchema } }, async (req) => {
      const { request_ids } = req.body as z.output<typeof abortBodySchema>;
      return { aborted: await service.abort(request_ids) };
    });
  });
}
