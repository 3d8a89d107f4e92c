import type { FastifyInstance, FastifyServerOptions } from "fastify";
import type { OmniDiffusionConfigInput } from "../../core/config.js";
import { ConfigError } from "../../errors/omni-error.js";
import { createWorkerApp } from "./fastify-app.js";
import type { GrpcApi } from "./grpc-api.js";
import { registerHttpApi } from "./http-api.js";
import { SAGEMAKER_MAX_PAYLOAD_BYTES, registerSageMakerApi } from "./sagemaker-api.js";
import { WorkerService } from "./worker-service.js";

/** Options of {@link startWorkerServer}. A port of 0 picks a free one; an absent port is not served. */
export interface WorkerServerOptions {
  /** Config of the engine the worker runs (model, `numGpus` worker processes, threads, limits); `batchWindowMs` defaults to 0. */
  engine?: OmniDiffusionConfigInput;
  /** Interface to listen on. Default 127.0.0.1. */
  host?: string;
  httpPort?: number;
  grpcPort?: number;
  sagemakerPort?: number;
  /** Required as a Bearer token on the HTTP and gRPC APIs (health excepted). */
  apiKey?: string;
  /** Largest HTTP request body, bytes. Default 4 MiB (the SageMaker port always allows SageMaker's 6 MB). */
  bodyLimitBytes?: number;
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
  const listen = async (app: FastifyInstance, port: number): Promise<string> => {
    apps.push(app);
    await app.listen({ host, port });
    const addr = app.server.address();
    return `http://${host}:${typeof addr === "object" && addr ? addr.port : port}`;
  };
  try {
    if (opts.httpPort !== undefined) {
      const app = createWorkerApp({ bodyLimit: opts.bodyLimitBytes ?? 4 * 1024 * 1024, logger: opts.logger });
      registerHttpApi(app, service, { apiKey: opts.apiKey, healthTimeoutMs });
      httpUrl = await listen(app, opts.httpPort);
    }
    if (opts.sagemakerPort !== undefined) {
      const app = createWorkerApp({ bodyLimit: SAGEMAKER_MAX_PAYLOAD_BYTES, logger: opts.logger });
      registerSageMakerApi(app, service, { healthTimeoutMs });
      sagemakerUrl = await listen(app, opts.sagemakerPort);
    }
    if (opts.grpcPort !== undefined) {
      // Imported only when served, so an HTTP-only worker (and the package import) does not load gRPC.
      const { startGrpcApi } = await import("./grpc-api.js");
      grpcApi = await startGrpcApi(service, { host, port: opts.grpcPort, apiKey: opts.apiKey, healthTimeoutMs });
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
    close() {
      closing ??= (async () => {
        await Promise.allSettled([...apps.map((a) => a.close()), grpcApi?.close()]);
        await service.close();
      })();
      return closing;
    },
  };
}
