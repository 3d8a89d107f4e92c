import { z } from "zod";
import type { OmniDiffusionConfig } from "../core/config.js";
import { DiffusionOutput } from "../core/output.js";
import type { OmniDiffusionRequest } from "../core/request.js";
import { UnhealthyError } from "../errors/omni-error.js";
import type { StepProgress } from "../core/progress.js";
import type { CollectiveRpcOptions } from "./base.js";
import type { Deadline } from "../policies/deadline.js";
import type { Endpoint } from "../policies/endpoint-pool.js";
import { HttpClient } from "./shared/http-client.js";
import { RemoteExecutor } from "./shared/remote-executor.js";
import { httpBaseUrl, requireEndpoints, workerRemoteOptionsSchema } from "./shared/remote-options.js";
import type { AttemptContext } from "../policies/remote-policy.js";
import type { Clock } from "../utils/clock.js";
import { PATHS, outputsOf } from "../protocol/wire.js";
import { requestToDict } from "../protocol/request-codec.js";
import { BatchPayloads } from "./shared/batch-payloads.js";

const httpOptionsSchema = workerRemoteOptionsSchema.extend({
  /** Stream step progress over server-sent events (one more frame per step) for calls someone listens to (a request's onProgress, engine.onStep); default: plain JSON. */
  stream: z.boolean().default(false),
});

type HttpOptions = z.output<typeof httpOptionsSchema>;

/**
 * Sends work to one or several `omni-diffusion worker` servers over their HTTP/JSON API
 * (`docs/wire-protocol.md`), with undici keep-alive connections.
 *
 * Every call goes through the shared resilience layer: a deadline propagated to the server
 * (`x-omni-timeout-ms`), retries with backoff and jitter on retryable failures (refused, reset, 408, 429
 * honouring Retry-After, 5xx), least-outstanding-requests balancing with failover, and a circuit breaker
 * per endpoint. Request ids make a retried generate idempotent: the server attaches a repeat to the
 * work already running. `collectiveRpc` goes to one endpoint (the endpoints are replicas) and returns
 * that server's ranks' replies.
 *
 * `executorOptions`: `endpoints` (required), `apiKey`, `timeoutMs`, `retries` (3), `stream` (false),
 * `backoffInitialMs`, `backoffMaxMs`, `breakerThreshold`, `halfOpenAfterMs`, `healthTimeoutMs`.
 *
 * @example
 * ```ts
 * import { DiffusionEngine } from "../engine/engine.js";
 * const engine = await DiffusionEngine.create({
 *   executorClass: "http",
 *   executorOptions: { endpoints: ["http://gpu-1:8000", "http://gpu-2:8000"], apiKey: "secret", retries: 3 },
 * });
 * ```
 */
export class HttpDiffusionExecutor extends RemoteExecutor<HttpClient, HttpOptions> {
  static override readonly supportsAbortMidStep: boolean = true;
  /** Its far end (an `omni-diffusion worker`) merges overlapping calls into its step loops: each request goes at once. */
  static override readonly supportsContinuousBatching: boolean = true;

  /** Each batch's request body, encoded once for all its attempts. */
  readonly #payloads = new BatchPayloads((batch) => ({ requests: batch.map(requestToDict) }));

  /** `deps.clock` times the endpoints' circuit breakers (default: the real clock). */
  constructor(config: OmniDiffusionConfig, deps: { clock?: Clock } = {}) {
    super(config, httpOptionsSchema, deps);
  }

  protected endpointNames(): string[] {
    return requireEndpoints(this.options.endpoints, "HttpDiffusionExecutor").map(httpBaseUrl);
  }

  protected connect(endpoint: string): HttpClient {
    return new HttpClient(endpoint, { apiKey: this.options.apiKey });
  }

  protected disconnect(client: HttpClient): Promise<void> {
    return client.close();
  }

  protected async generateOn(ctx: AttemptContext<HttpClient>, batch: OmniDiffusionRequest[], onProgress?: (p: StepProgress) => void): Promise<DiffusionOutput> {
    const stream = this.options.stream && onProgress;
    const reply = await ctx.endpoint.client.call({
      method: "POST",
      path: PATHS.generate,
      body: this.#payloads.of(batch),
      deadline: ctx.deadline,
      onEvent: stream
        ? (e) => {
            if (e.event !== "progress") return;
            const p = JSON.parse(e.data) as { request_id: string; step: number; total_steps: number };
            onProgress({ requestId: p.request_id, step: p.step, totalSteps: p.total_steps });
          }
        : undefined,
    });
    return DiffusionOutput.merge(outputsOf(reply, ctx.endpoint.url).map((o) => DiffusionOutput.fromDict(o)));
  }

  protected async rpcOn(ctx: AttemptContext<HttpClient>, method: string, opts: CollectiveRpcOptions): Promise<unknown> {
    const reply = (await ctx.endpoint.client.call({
      method: "POST",
      path: PATHS.rpc,
      body: { method, args: opts.args ?? [], kwargs: opts.kwargs ?? {}, unique_reply_rank: opts.uniqueReplyRank ?? null, timeout: Math.max(1, Math.floor(ctx.deadline.remaining())) },
      deadline: ctx.deadline,
    })) as { result?: unknown } | null;
    return reply?.result ?? null;
  }

  protected async healthOn(endpoint: Endpoint<HttpClient>, deadline: Deadline): Promise<void> {
    const reply = (await endpoint.client.call({ method: "GET", path: PATHS.health, deadline })) as { status?: unknown; reason?: unknown } | null;
    if (reply?.status !== "ok") throw new UnhealthyError(`${endpoint.url}: ${String(reply?.reason ?? "not ready")}`, { data: { endpoint: endpoint.url } });
  }

  protected override async abortOn(endpoint: Endpoint<HttpClient>, requestIds: string[], deadline: Deadline): Promise<void> {
    await endpoint.client.call({ method: "POST", path: PATHS.abort, body: { request_ids: requestIds }, deadline });
  }
}
