import cors from "@fastify/cors";
import Fastify, { type FastifyInstance } from "fastify";
import { DiffusionEngine } from "../../engine/engine.js";
import type { OmniDiffusionConfigInput } from "../../core/config.js";
import { newRequestId } from "../../core/request.js";
import { ClosedError, UnhealthyError, type OmniError } from "../../errors/omni-error.js";
import { ServerMetrics } from "../../metrics/server-metrics.js";
import { authorizationHeaders, checkApiKey } from "../shared/api-key.js";
import { hardenedServerFactory } from "../shared/http-limits.js";
import { installJsonBodyParser } from "../shared/json-body.js";
import { portError } from "../shared/port-check.js";
import { HostAllowList, OriginAllowList, crossSiteRefusal, hostRefusal } from "../shared/site-guard.js";
import { useZodValidator } from "../shared/zod-validator.js";
import { settleWithin } from "../../utils/settle-within.js";
import { ImageStore } from "./image-store.js";
import { loadModelCard, type ModelCard } from "./model-card.js";
import { requestError, schemaError, toHttpError } from "./error-mapping.js";
import { isPublicRoute } from "./public-route.js";
import type { ServerContext } from "./server-context.js";
import { parseServerConfig, type ServerConfig, type ServerLimits, type ServerOptions } from "./server-options.js";
import type { ServerPlugin } from "./server-plugin.js";
import { systemRoutes } from "./system-routes.js";

/** The engine config a server-owned engine gets: the server's request limits also bound the engine. */
function engineConfigFor(input: OmniDiffusionConfigInput = {}, limits: ServerLimits): OmniDiffusionConfigInput {
  return {
    ...input,
    limits: {
      maxWidth: limits.maxWidth,
      maxHeight: limits.maxHeight,
      maxSteps: limits.maxSteps,
      maxOutputsPerPrompt: limits.maxN,
      ...input.limits,
    },
  };
}

/** What {@link ServerApp.open} hands the constructor: the fastify app, the engine and what was loaded for it. */
export interface ServerParts {
  app: FastifyInstance;
  engine: DiffusionEngine;
  /** True when the server created the engine (and so closes it). */
  ownsEngine: boolean;
  config: ServerConfig;
  model: ModelCard;
}

/**
 * The app shell of the image server: fastify with pino logs in front of a {@link DiffusionEngine}, the
 * cross-cutting hooks (site guard, API key, metrics, request ids, draining), the zod validator, the error
 * mapping, `GET /health`, `GET /metrics` and the image files, and graceful shutdown. The APIs it serves are
 * peer {@link ServerPlugin}s handed to it (src/server/omni-server.ts lists the built-in ones); each gets the
 * {@link ServerContext}.
 * `close()` is graceful: no new requests, in-flight ones finish until `shutdownTimeoutMs` (then they are
 * aborted with a 503), and a server-owned engine is closed last, taking its worker processes with it.
 */
export class ServerApp {
  readonly app: FastifyInstance;
  readonly engine: DiffusionEngine;
  readonly config: ServerConfig;
  readonly metrics: ServerMetrics;
  readonly model: ModelCard;
  readonly #ownsEngine: boolean;
  readonly #store: ImageStore;
  #draining: ClosedError | null = null;
  #failure: OmniError | null = null;
  #inflight = new Set<(reason: OmniError) => void>();
  #idleWaiters: (() => void)[] = [];
  #batchMs = 0;
  readonly #batchSub: { dispose(): void };
  #url: string | null = null;
  #closing: Promise<void> | null = null;

  protected constructor({ app, engine, ownsEngine, config, model }: ServerParts, plugins: readonly ServerPlugin[]) {
    this.app = app;
    this.engine = engine;
    this.#ownsEngine = ownsEngine;
    this.config = config;
    this.model = model;
    this.metrics = new ServerMetrics(engine, { defaultMetrics: config.defaultMetrics });
    this.#store = new ImageStore({ ttlMs: config.imageTtlMs, maxBytes: config.imageStoreMaxBytes });
    this.#batchSub = engine.onBatch((e) => {
      // Moving average of batch time, for Retry-After estimates.
      this.#batchMs = this.#batchMs === 0 ? e.durationMs : 0.8 * this.#batchMs + 0.2 * e.durationMs;
    });
    engine.executor.registerFailureCallback((err) => {
      this.#failure = new UnhealthyError(`the executor failed and cannot serve: ${err.message}`, { cause: err });
      this.metrics.setHealthy(false);
      app.log.error({ err }, "executor failed; generation requests now get 503");
    });
    this.#install(plugins);
  }

  /**
   * Builds a server (and its engine, unless `opts.engine` is given) without listening: `make` constructs
   * it from the parts (a subclass passes its own constructor and the plugins it serves).
   */
  protected static async open<T extends ServerApp>(opts: ServerOptions, make: (parts: ServerParts) => T): Promise<T> {
    const config = parseServerConfig(opts);
    const engine = opts.engine ?? (await DiffusionEngine.create(engineConfigFor(opts.engineConfig, config.limits)));
    try {
      const app = Fastify({
        logger: opts.logger ?? true,
        bodyLimit: config.limits.maxBodyBytes,
        genReqId: () => newRequestId(),
        serverFactory: hardenedServerFactory(config.http),
        // Our own draining answers in the OpenAI error shape.
        return503OnClosing: false,
      });
      const model = await loadModelCard(engine, config.servedModelName, config.healthTimeoutMs, (m) => app.log.warn(m));
      const server = make({ app, engine, ownsEngine: !opts.engine, config, model });
      await app.ready();
      return server;
    } catch (err) {
      if (!opts.engine) await engine.close();
      throw err;
    }
  }

  /** The listening address (`http://host:port`), once `listen` resolved. */
  get url(): string | null {
    return this.#url;
  }

  /** True from the first `close()` on. */
  get draining(): boolean {
    return this.#draining !== null;
  }

  /** Generation requests in flight (queued or running). */
  get inFlight(): number {
    return this.#inflight.size;
  }

  /** Starts listening on the configured host and port; resolves with the URL. */
  async listen(): Promise<string> {
    let url: string;
    try {
      url = await this.app.listen({ host: this.config.host, port: this.config.port });
    } catch (err) {
      throw portError({ host: this.config.host, port: this.config.port, flag: "--port" }, err);
    }
    this.#url = url;
    this.app.log.info({ url, model: this.model.id, executor: this.engine.executor.constructor.name }, "omni-diffusion serving");
    return url;
  }

  /**
   * Graceful shutdown, idempotent: refuses new generation requests (503), stops listening, waits for the
   * in-flight ones up to `timeoutMs` (default `shutdownTimeoutMs`), aborts any still running, closes the
   * remaining connections and then the engine when the server created it.
   */
  close(opts: { timeoutMs?: number } = {}): Promise<void> {
    this.#closing ??= (async () => {
      const timeoutMs = opts.timeoutMs ?? this.config.shutdownTimeoutMs;
      const log = this.app.log;
      this.#draining = new ClosedError("the server is shutting down and accepts no new requests", { data: { openaiCode: "shutting_down" } });
      log.info({ inFlight: this.#inflight.size, timeoutMs }, "shutting down: refusing new requests, finishing the ones in flight");
      const appClosed = this.app.close();
      if ((await settleWithin(this.#whenIdle(), timeoutMs)).status === "timeout") {
        log.warn({ requests: this.#inflight.size }, "shutdown deadline passed; aborting the requests still in flight");
        const reason = new ClosedError("the server shut down before the request finished", { data: { openaiCode: "shutting_down" } });
        for (const abort of this.#inflight) abort(reason);
        if ((await settleWithin(this.#whenIdle(), 10_000)).status === "timeout") log.error({ requests: this.#inflight.size }, "requests still in flight after abort");
      }
      // Keep-alive connections would hold server.close() open; every response is complete by now.
      this.app.server.closeAllConnections();
      if ((await settleWithin(appClosed, 10_000)).status === "timeout") log.error("fastify did not close within 10 s");
      this.#store.clear();
      this.#batchSub.dispose();
      this.metrics.dispose();
      if (this.#ownsEngine) await this.engine.close();
      log.info("shut down");
    })();
    return this.#closing;
  }

  #whenIdle(): Promise<void> {
    if (this.#inflight.size === 0) return Promise.resolve();
    return new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
  }

  /** Seconds a client refused with 429 should wait: the batches ahead of it times the recent batch time. */
  #retryAfterSeconds(): number {
    const { numGpus, limits } = this.engine.config;
    const batchesAhead = Math.ceil((this.engine.stats.queued + 1) / limits.maxBatchSize);
    const seconds = (batchesAhead * (this.#batchMs || 1_000)) / Math.max(1, numGpus) / 1_000;
    return Math.min(60, Math.max(1, Math.ceil(seconds)));
  }

  #context(): ServerContext {
    return {
      engine: this.engine,
      config: this.config,
      model: this.model,
      metrics: this.metrics,
      store: this.#store,
      refusal: () => this.#draining ?? this.#failure,
      track: (abort) => {
        this.#inflight.add(abort);
        return () => {
          if (!this.#inflight.delete(abort)) return;
          if (this.#inflight.size > 0) return;
          const waiters = this.#idleWaiters;
          this.#idleWaiters = [];
          for (const w of waiters) w();
        };
      },
    };
  }

  #install(plugins: readonly ServerPlugin[]): void {
    const { app, config } = this;
    const origins = new OriginAllowList(config.corsOrigins);
    // With a key, the key keeps other sites' pages out; without one, only the Host header tells a rebound name apart.
    const hosts = config.apiKey ? null : new HostAllowList([...config.allowedHosts, ...(config.publicBaseUrl ? [new URL(config.publicBaseUrl).hostname] : [])], config.host);
    // Route schemas are zod schemas, compiled once at module load; a mismatch is a 422 naming the field.
    useZodValidator(app, schemaError);
    // JSON only (anything else is a 415), through the shared safe parser: depth, encoding and charset checked.
    installJsonBodyParser(app, { maxDepth: config.http.maxJsonDepth });
    app.addHook("onRequest", async (req, reply) => {
      const t0 = performance.now();
      reply.raw.once("close", () => {
        const status = reply.raw.writableFinished ? reply.raw.statusCode : 499;
        this.metrics.httpRequest(req.method, req.routeOptions.url ?? "unmatched", status, (performance.now() - t0) / 1000);
      });
      reply.header("x-request-id", req.id);
      // Where a request comes from is checked before its key: a browser may hold Basic credentials for this server.
      if (hosts && req.routeOptions.url !== "/health") {
        const refused = hostRefusal(req.headers, hosts);
        if (refused) throw refused;
      }
      const crossSite = crossSiteRefusal(req.method, req.headers, origins);
      if (crossSite) throw crossSite;
      // A CORS preflight carries no credentials by design; @fastify/cors answers it.
      const preflight = req.method === "OPTIONS" && origins.size > 0;
      if (config.apiKey && req.routeOptions.url !== "/health" && !isPublicRoute(req) && !preflight) {
        const denied = checkApiKey(authorizationHeaders(req.raw.rawHeaders), config.apiKey);
        if (denied) throw denied;
      }
    });
    // Responses finished while draining close their connection, so no keep-alive socket outlives the drain.
    app.addHook("onSend", async (_req, reply, payload) => {
      if (this.#draining) reply.header("connection", "close");
      return payload;
    });
    app.setErrorHandler((err, req, reply) => {
      const { statusCode, body } = toHttpError(err, config.limits, req.id);
      if (statusCode >= 500) req.log.error({ err, requestId: req.id }, "request failed");
      else req.log.info({ status: statusCode, code: body.error.code, param: body.error.param }, body.error.message);
      if (statusCode === 429) reply.header("retry-after", String(this.#retryAfterSeconds()));
      // An unauthenticated client does not keep its connection (nor get its body read).
      if (statusCode === 401) reply.header("www-authenticate", 'Bearer realm="omni-diffusion"').header("connection", "close");
      return reply.code(statusCode).send(body);
    });
    app.setNotFoundHandler((req, reply) => {
      const { statusCode, body } = toHttpError(requestError(404, `Unknown request URL: ${req.method} ${req.url.split("?")[0]}.`, null, "unknown_url"), config.limits, req.id);
      return reply.code(statusCode).send(body);
    });
    // Each dialect is its own encapsulated plugin; the hooks, validator and error handler above are inherited.
    if (origins.size > 0) {
      void app.register(cors, {
        origin: (origin, cb) => cb(null, origins.allows(origin)),
        methods: ["GET", "POST"],
        exposedHeaders: ["x-request-id", "retry-after"],
        maxAge: 600,
      });
    }
    const ctx = this.#context();
    void app.register(systemRoutes, { ctx });
    for (const p of plugins) if (p.enabled?.(config) ?? true) void app.register(p.plugin, { ctx });
  }
}
