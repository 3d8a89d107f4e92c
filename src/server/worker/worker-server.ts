import type { FastifyInstance, FastifyServerOptions } from "fastify";
import pino from "pino";
import type { OmniDiffusionConfigInput } from "../../core/config.js";
import { ConfigError } from "../../errors/omni-error.js";
import { httpLimitsSchema, type HttpLimitsInput } from "../shared/http-limits.js";
import { portError } from "../shared/port-check.js";
import { createWorkerApp } from "./fastify-app.js";
import type { GrpcApi } from "./grpc-api.js";
import { registerHttpApi } from "./http-api.js";
import { SAGEMAKER_MAX_PAYLOAD_BYTES, registerSageMakerApi } from "./sagemaker-api.js";
import { WorkerService } from "./worker-service.js";
import { zodToConfigError } from "../../utils/zod-error.js";

/** Options of {@link startWorkerServer}. A port of 0 picks a free one; an absent port is not served. */
export interface WorkerServerOptions {
  /** Config of the engine the worker runs (model, `numGpus` worker processes, threads, limits); `batchWindowMs` defaults to 0. */
  engine?: OmniDiffusionConfigInput;
  /** Interface the HTTP and gRPC APIs listen on. Default 127.0.0.1. */
  host?: string;
  /**
   * Interface the SageMaker port listens on. Default 127.0.0.1 (loopback): it answers without a key when
   * `sagemakerTrustNetwork` is set, so it is exposed only on purpose (`worker serve` binds 0.0.0.0, the
   * container network SageMaker reaches).
   */
  sagemakerHost?: string;
  /**
   * The SageMaker port trusts its network: `/invocations` needs no key even when `apiKey` is set (SageMaker
   * authenticates callers with IAM and does not forward `Authorization`). Default false.
   */
  sagemakerTrustNetwork?: boolean;
  httpPort?: number;
  grpcPort?: number;
  sagemakerPort?: number;
  /** Required as a Bearer token on the HTTP and gRPC APIs (health excepted). */
  apiKey?: string;
  /**
   * Largest HTTP request body and gRPC request message, bytes. Default 4 MiB (the SageMaker port always
   * allows SageMaker's 6 MB). gRPC replies may be larger (they carry images).
   */
  bodyLimitBytes?: number;
  /** Timeouts, connection cap and JSON depth of the HTTP and SageMaker ports (JSON depth: gRPC too). */
  http?: HttpLimitsInput;
  /** Deadline of the rank pings behind health checks, ms. Default 5 000. */
  healthTimeoutMs?: number;
  /** fastify's pino logger options. Default: silent. */
  logger?: FastifyServerOptions["logger"];
}

/** A running worker server. */
export interface WorkerServer {
  /** `http://host:port` of the HTTP API, when served. */
  readonly httpUrl: string | undefined;
  /** `host:port` of the gRPC API, when served. */
  readonly grpcAddress: string | undefined;
  /** `http://host:port` of the SageMaker contract, when served. */
  readonly sagemakerUrl: string | undefined;
  /** Resolves once the model is loaded and requests are served (until then health answers 503). */
  readonly ready: Promise<void>;
  readonly service: WorkerService;
  /** Exposure warnings for the operator (an open SageMaker port, keyless APIs on a public interface). */
  readonly warnings: readonly string[];
  /** Stops listening, then closes the engine. Idempotent. */
  close(): Promise<void>;
}

/**
 * Starts `omni-diffusion worker`: listens on each configured port at once (health answers 503 while the
 * model loads), and loads the engine, multi-process by default.
 *
 * @example
 * ```ts
 * const server = await startWorkerServer({ httpPort: 0, grpcPort: 0, engine: { numGpus: 1 } });
 * await server.ready;
 * console.log(server.httpUrl, server.grpcAddress);
 * await server.close();
 * ```
 */
export async function startWorkerServer(opts: WorkerServerOptions = {}): Promise<WorkerServer> {
  const host = opts.host ?? "127.0.0.1";
  const sagemakerHost = opts.sagemakerHost ?? "127.0.0.1";
  const limits = httpLimitsSchema.safeParse(opts.http ?? {});
  if (!limits.success) throw zodToConfigError(limits.error, "http limits", (p) => (p ? `http.${p}` : "http"));
  const http = limits.data;
  const bodyLimit = opts.bodyLimitBytes ?? 4 * 1024 * 1024;
  const healthTimeoutMs = opts.healthTimeoutMs ?? 5_000;
  if (opts.httpPort === undefined && opts.grpcPort === undefined && opts.sagemakerPort === undefined) {
    throw new ConfigError("the worker server needs at least one of httpPort, grpcPort, sagemakerPort", { field: "httpPort" });
  }
  // The calling engine already batched what it sends; waiting for more here would only add latency. Requests
  // that arrive while a batch runs still queue and share the next one.
  const service = new WorkerService({ batchWindowMs: 0, ...opts.engine });
  const apps: FastifyInstance[] = [];
  let grpcApi: GrpcApi | undefined;
  let httpUrl: string | undefined;
  let sagemakerUrl: string | undefined;
  const listen = async (app: FastifyInstance, on: string, port: number, flag: string): Promise<string> => {
    apps.push(app);
    try {
      await app.listen({ host: on, port });
    } catch (err) {
      throw portError({ host: on, port, flag }, err);
    }
    const addr = app.server.address();
    return `http://${on}:${typeof addr === "object" && addr ? addr.port : port}`;
  };
  try {
    if (opts.httpPort !== undefined) {
      const app = createWorkerApp({ bodyLimit, http, logger: opts.logger });
      registerHttpApi(app, service, { apiKey: opts.apiKey, healthTimeoutMs });
      httpUrl = await listen(app, host, opts.httpPort, "--http-port");
    }
    if (opts.sagemakerPort !== undefined) {
      const app = createWorkerApp({ bodyLimit: SAGEMAKER_MAX_PAYLOAD_BYTES, http, logger: opts.logger });
      registerSageMakerApi(app, service, { healthTimeoutMs, apiKey: opts.apiKey, trustNetwork: opts.sagemakerTrustNetwork });
      sagemakerUrl = await listen(app, sagemakerHost, opts.sagemakerPort, "--sagemaker-port");
    }
    if (opts.grpcPort !== undefined) {
      // Imported only when served, so an HTTP-only worker (and the package import) does not load gRPC.
      const { startGrpcApi } = await import("./grpc-api.js");
      const log = grpcLogger(opts.logger);
      grpcApi = await startGrpcApi(service, {
        host,
        port: opts.grpcPort,
        apiKey: opts.apiKey,
        healthTimeoutMs,
        maxMessageBytes: bodyLimit,
        maxJsonDepth: http.maxJsonDepth,
        log: (err, requestId) => log.error({ err, requestId }, "gRPC call failed"),
      }).catch((err: unknown) => {
        throw portError({ host, port: opts.grpcPort!, flag: "--grpc-port" }, (err as { cause?: unknown }).cause ?? err);
      });
    }
  } catch (err) {
    await Promise.allSettled([...apps.map((a) => a.close()), grpcApi?.close(), service.close()]);
    throw err;
  }
  let closing: Promise<void> | null = null;
  return {
    httpUrl,
    grpcAddress: grpcApi?.address,
    sagemakerUrl,
    ready: service.ready,
    service,
    warnings: exposureWarnings({ ...opts, host, sagemakerHost }),
    close() {
      closing ??= (async () => {
        await Promise.allSettled([...apps.map((a) => a.close()), grpcApi?.close()]);
        await service.close();
      })();
      return closing;
    },
  };
}

const isLoopback = (h: string) => /^(127\.|::1$|localhost$)/.test(h);

/** What the operator should know about who can reach this worker without a key. */
export function exposureWarnings(o: WorkerServerOptions & { host: string; sagemakerHost: string }): string[] {
  const out: string[] = [];
  if (!o.apiKey && !isLoopback(o.host) && (o.httpPort !== undefined || o.grpcPort !== undefined)) {
    out.push(`the HTTP/gRPC APIs listen on ${o.host} without an API key (--api-key or OMNI_DIFFUSION_API_KEY): anyone who reaches the port can use this worker`);
  }
  if (o.sagemakerPort !== undefined && !isLoopback(o.sagemakerHost)) {
    if (!o.apiKey) out.push(`the SageMaker port listens on ${o.sagemakerHost} without an API key: only SageMaker (which authenticates callers with IAM) should reach it`);
    else if (o.sagemakerTrustNetwork) out.push(`the SageMaker port listens on ${o.sagemakerHost} and, with --sagemaker-trust-network, does not check the API key: only SageMaker should reach it`);
    else out.push(`the SageMaker port requires the API key; SageMaker does not forward Authorization, so behind SageMaker pass --sagemaker-trust-network`);
  }
  return out;
}

/** A pino logger for the gRPC API, silent unless the worker logs. */
function grpcLogger(logger: WorkerServerOptions["logger"]) {
  if (!logger) return pino({ enabled: false });
  if (typeof logger !== "object") return pino({});
  // fastify's `stream` option (the CLI sends logs to stderr): the gRPC API logs to the same place.
  const { stream, ...options } = logger as pino.LoggerOptions & { stream?: pino.DestinationStream };
  return stream ? pino(options, stream) : pino(options);
}
