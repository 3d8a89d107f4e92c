import type { AddressInfo } from "node:net";
import { join } from "node:path";
import type { FastifyPluginAsync } from "fastify";
import { systemClock, type Clock } from "../../utils/clock.js";
import type { ServerContext } from "../app/server-context.js";
import { useZodValidator } from "../shared/zod-validator.js";
import { predictionSchemaError, replicateErrorHandler } from "./prediction-errors.js";
import type { PredictionRecord } from "./prediction-record.js";
import { PredictionRunner } from "./prediction-runner.js";
import { openPredictionStore } from "./open-prediction-store.js";
import { renderPrediction } from "./prediction-view.js";
import { registerPredictionRoutes } from "./predictions-routes.js";
import type { WebhookDispatcher } from "./webhook-types.js";
import { SqliteWebhookDispatcher } from "./webhooks/sqlite-webhook-dispatcher.js";
import { webhookSecretRoute } from "./webhooks/webhook-secret-route.js";

/** What the predictions API takes besides the server's config (objects, not data). */
export interface PredictionsPluginOptions {
  /**
   * Delivers webhooks. Absent: the built-in dispatcher (signed, retried, durable in `<dataDir>/webhooks.db`,
   * or in memory without a data dir); null: none, and a prediction that asks for a webhook is a 422.
   */
  webhooks?: WebhookDispatcher | null;
  /** Time of timestamps, `Prefer: wait`, `Cancel-After` and retention (tests pass a manual clock). */
  clock?: Clock;
}

/** `http://host:port` of a listening fastify server (loopback for a wildcard bind), else "". */
function listeningBase(server: { address(): AddressInfo | string | null }): string {
  const a = server.address();
  if (!a || typeof a === "string") return "";
  let host = a.address;
  if (host === "0.0.0.0") host = "127.0.0.1";
  else if (host === "::") host = "::1";
  return `http://${host.includes(":") ? `[${host}]` : host}:${a.port}`;
}

/**
 * Replicate's predictions API (`/v1/predictions`, `/v1/models/{owner}/{name}/predictions`): jobs that outlive
 * the request, kept in the server's prediction store (SQLite in `dataDir`, or in memory), run by a
 * {@link PredictionRunner}, answered in Replicate's shapes (errors too). A peer dialect of the app.
 */
export function predictionsPlugin(opts: PredictionsPluginOptions = {}): FastifyPluginAsync<{ ctx: ServerContext }> {
  return async (app, { ctx }) => {
    const clock = opts.clock ?? systemClock;
    const store = await openPredictionStore(ctx);
    const own =
      opts.webhooks === undefined
        ? new SqliteWebhookDispatcher({
            db: ctx.config.dataDir ? join(ctx.config.dataDir, "webhooks.db") : ":memory:",
            secret: ctx.config.webhookSecret,
            allowPrivate: ctx.config.allowPrivateWebhooks,
            logger: app.log,
            clock,
          })
        : null;
    const webhooks = opts.webhooks === undefined ? own : opts.webhooks;
    // A URL is never built from the Host header (the client controls it): --public-url, else the bound address.
    const base = () => (ctx.config.publicBaseUrl ?? listeningBase(app.server)).replace(/\/+$/, "");
    const render = (rec: PredictionRecord): Record<string, unknown> => renderPrediction(rec, base(), webhooks && rec.webhook ? webhooks.deliveries(rec.id) : null, runner.queuePosition(rec.id));
    const runner: PredictionRunner = new PredictionRunner({ ctx, store, clock, log: app.log, ttlMs: ctx.config.jobTtlMs, webhooks, render });
    // Bodies carry images as base64: two uploads plus the JSON around them.
    const bodyLimit = 2 * ctx.config.limits.maxUploadBytes + ctx.config.limits.maxBodyBytes;
    app.addHook("onClose", async () => {
      await runner.close();
      await own?.close(); // pending deliveries stay in webhooks.db for the next start
      await store.close();
    });
    useZodValidator(app, predictionSchemaError);
    app.setErrorHandler(replicateErrorHandler(bodyLimit, () => runner.retryAfterSeconds()));
    registerPredictionRoutes(app, { ctx, store, runner, clock, webhooks, base, render, bodyLimit });
    if (webhooks) await app.register(webhookSecretRoute, { dispatcher: webhooks });
    await runner.start();
  };
}

/** The plugin as `BUILTIN_PLUGINS` registers it: the built-in webhook dispatcher, the system clock. */
export const predictionRoutes = predictionsPlugin();
