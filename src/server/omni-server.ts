import { a1111Routes } from "./a1111/a1111-routes.js";
import { ServerApp } from "./app/server-app.js";
import type { ServerOptions } from "./app/server-options.js";
import type { ServerPlugin } from "./app/server-plugin.js";
import { openaiRoutes } from "./openai/openai-plugin.js";
import { playgroundRoutes } from "./ui/playground-plugin.js";
import { predictionRoutes, predictionsPlugin } from "./predictions/predictions-plugin.js";
import type { WebhookDispatcher } from "./predictions/webhook-types.js";
import type { Clock } from "../utils/clock.js";

/**
 * The API dialects an {@link OmniServer} serves, in registration order. Each is a peer plugin over
 * `server/app/`; a new one is its own folder plus one line here (as predictions/ was).
 */
export const BUILTIN_PLUGINS: readonly ServerPlugin[] = [
  { name: "openai", plugin: openaiRoutes },
  { name: "a1111", plugin: a1111Routes, enabled: (c) => c.a1111 },
  { name: "ui", plugin: playgroundRoutes, enabled: (c) => c.ui },
  { name: "predictions", plugin: predictionRoutes, enabled: (c) => c.predictions },
];

/** {@link ServerOptions} plus the objects the predictions API takes (they are not data, so not in the config). */
export interface OmniServerOptions extends ServerOptions {
  /** Delivers the predictions API's webhooks: absent, the built-in one; null, none (a prediction with a `webhook` is a 422). */
  webhooks?: WebhookDispatcher | null;
  /** Clock of the predictions API (timestamps, `Prefer: wait`, `Cancel-After`, `jobTtlMs`); tests pass a manual one. */
  clock?: Clock;
}

/**
 * The OpenAI-compatible image server (`omni-diffusion serve`): fastify with pino logs in front of a
 * `DiffusionEngine` and whatever executor the operator configured.
 *
 * Routes: `POST /v1/images/generations` (JSON or SSE), `POST /v1/images/edits` (multipart, JSON or SSE),
 * `GET /v1/images/files/:id`, `GET /v1/models`, `GET /health`, `GET /metrics`, the AUTOMATIC1111-compatible
 * `/sdapi/v1/*` (unless `a1111: false`) and the web playground at `/` (unless `ui: false`). Every route but `/health`
 * and the playground's page and scripts needs the API key when one is set. POSTs from another site's page are
 * refused (403) unless `corsOrigins` allows that origin; without a key, so are `Host` names other than IP
 * addresses, `localhost`, the bound host and `allowedHosts` (DNS rebinding).
 * `close()` is graceful: no new requests, in-flight ones finish until `shutdownTimeoutMs` (then they are
 * aborted with a 503), and a server-owned engine is closed last, taking its worker processes with it.
 *
 * @example
 * ```ts
 * const server = await startServer({ port: 0, engineConfig: { numGpus: 1 }, logger: false });
 * const res = await fetch(`${server.url}/v1/images/generations`, {
 *   method: "POST",
 *   headers: { "content-type": "application/json" },
 *   body: JSON.stringify({ prompt: "a red circle on a blue background", size: "32x32", num_inference_steps: 4 }),
 * });
 * await server.close();
 * ```
 */
export class OmniServer extends ServerApp {
  /** Builds the server (and its engine, unless `opts.engine` is given) without listening. */
  static async create(opts: OmniServerOptions = {}): Promise<OmniServer> {
    const { webhooks, clock, ...rest } = opts;
    const plugins = webhooks !== undefined || clock ? BUILTIN_PLUGINS.map((p) => (p.name === "predictions" ? { ...p, plugin: predictionsPlugin({ webhooks, clock }) } : p)) : BUILTIN_PLUGINS;
    return ServerApp.open(rest, (parts) => new OmniServer(parts, plugins));
  }
}

/** Creates an {@link OmniServer} and starts listening. */
export async function startServer(opts: OmniServerOptions = {}): Promise<OmniServer> {
  const server = await OmniServer.create(opts);
  try {
    await server.listen();
  } catch (err) {
    await server.close({ timeoutMs: 0 });
    throw err;
  }
  return server;
}
