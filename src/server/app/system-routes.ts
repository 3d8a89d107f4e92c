import type { FastifyPluginAsync } from "fastify";
import { ClosedError, UnhealthyError, toOmniError } from "../../errors/omni-error.js";
import { requestError, toHttpError } from "./error-mapping.js";
import type { ServerContext } from "./server-context.js";

/**
 * The app's own routes, served whichever dialects are on: `GET /health` (200, or 503 with the reason),
 * `GET /metrics` (Prometheus text) and `GET /v1/images/files/:id` (the images of `response_format: "url"`
 * in the app's image store, until they expire).
 */
export const systemRoutes: FastifyPluginAsync<{ ctx: ServerContext }> = async (app, { ctx }) => {
  // A probe every few seconds would drown the log in two request lines each: only a failed check is logged.
  app.get("/health", { logLevel: "warn" }, async (req, reply) => {
    const refusal = ctx.refusal();
    try {
      if (refusal) throw refusal;
      await ctx.engine.checkHealth({ timeout: ctx.config.healthTimeoutMs });
      ctx.metrics.setHealthy(true);
      return { status: "ok", model: ctx.model.id };
    } catch (err) {
      const e = toOmniError(err);
      const unhealthy = e instanceof UnhealthyError || e instanceof ClosedError ? e : new UnhealthyError(`health check failed: ${e.message}`, { cause: e });
      if (!(refusal instanceof ClosedError)) ctx.metrics.setHealthy(false);
      req.log.warn({ err: unhealthy.message }, "health check failed");
      const { body } = toHttpError(unhealthy, ctx.config.limits, req.id);
      return reply.code(503).send(body);
    }
  });

  app.get("/metrics", async (_req, reply) => {
    const text = await ctx.metrics.registry.metrics();
    return reply.type(ctx.metrics.registry.contentType).send(text);
  });

  app.get<{ Params: { id: string } }>("/v1/images/files/:id", async (req, reply) => {
    const { id } = req.params;
    const img = ctx.store.get(id);
    if (!img) throw requestError(404, `No image '${id}': it expired (images are kept ${Math.round(ctx.config.imageTtlMs / 1000)} s) or never existed.`, "id", "file_not_found");
    const maxAge = Math.max(0, Math.floor((img.expiresAt - Date.now()) / 1000));
    return reply
      .type("image/png")
      .header("cache-control", `private, max-age=${maxAge}`)
      .header("expires", new Date(img.expiresAt).toUTCString())
      .send(img.png);
  });
};
