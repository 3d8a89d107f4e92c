import type { SageMakerRuntimeClient } from "@aws-sdk/client-sagemaker-runtime";
import { z } from "zod";
import type { OmniDiffusionConfig } from "../core/config.js";
import { DiffusionOutput } from "../core/output.js";
import type { OmniDiffusionRequest } from "../core/request.js";
import {
  ConfigError,
  NotFoundError,
  OmniError,
  PermissionError,
  QueueFullError,
  TransportError,
  UnauthorizedError,
  UnhealthyError,
  ValidationError,
  WorkerError,
} from "../errors/omni-error.js";
import type { CollectiveRpcOptions } from "./base.js";
import type { Deadline } from "../policies/deadline.js";
import type { Endpoint } from "../policies/endpoint-pool.js";
import { RemoteExecutor, type BatchPlan } from "./shared/remote-executor.js";
import { remoteOptionsSchema } from "./shared/remote-options.js";
import type { AttemptContext } from "../policies/remote-policy.js";
import { connectionError } from "../errors/connection-error.js";
import { errorFromResponse, isRetryableStatus, outputsOf } from "../protocol/wire.js";
import { requestToDict, type RequestDict } from "../protocol/request-codec.js";
import { BatchPayloads } from "./shared/batch-payloads.js";

/** SageMaker's limit on a real-time invocation's request and response payloads, bytes. */
export const SAGEMAKER_PAYLOAD_LIMIT_BYTES = 6 * 1024 * 1024;
/** SageMaker's limit on a real-time invocation's duration, ms. */
export const SAGEMAKER_INVOCATION_LIMIT_MS = 60_000;
/** The AWS SDK's documented switch for its Node-version support notice (`@aws-sdk/core`). */
const AWS_NODE_WARNING_ENV = "AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED";
/** Size assumed for a request without width/height when the model's native size is unknown. */
const FALLBACK_SIDE = 512;

const sagemakerOptionsSchema = remoteOptionsSchema.omit({ endpoints: true, apiKey: true }).extend({
  endpointName: z.string().min(1).max(63),
  /** AWS region; default: the standard chain (AWS_REGION, the config file). */
  region: z.string().min(1).optional(),
  targetVariant: z.string().min(1).optional(),
  /** Overrides the runtime endpoint URL (a VPC endpoint, a local stand-in). */
  endpointUrl: z.url().optional(),
  /** Most requests per invocation (batches are split further to stay under 6 MB). */
  maxBatchSize: z.number().int().min(1).max(256).default(16),
  /** Duration limit of one invocation, ms (SageMaker's own limit is 60 s, the maximum here). */
  invocationTimeoutMs: z.number().int().min(1).max(SAGEMAKER_INVOCATION_LIMIT_MS).default(SAGEMAKER_INVOCATION_LIMIT_MS),
});

type SageMakerOptions = z.output<typeof sagemakerOptionsSchema>;

/**
 * Sends work to an `omni-diffusion worker` deployed as a SageMaker real-time endpoint (the worker image's
 * `/ping` + `/invocations` contract), through `InvokeEndpoint` of `@aws-sdk/client-sagemaker-runtime`.
 * Credentials come from the standard AWS chain (environment, profile, instance role); the SDK's own
 * retries are off so the shared resilience layer decides.
 *
 * SageMaker's limits are respected: a batch is split into invocations whose request and (worst-case)
 * response stay under 6 MB and hold at most `maxBatchSize` requests; a request that alone would pass
 * 6 MB gets a ValidationError saying so; each invocation's budget is capped at 60 s and a call that hits
 * it ends with a TimeoutError naming the limit. Throttling and `ModelNotReadyException` are retryable, and so
 * is a `ModelError` unless the container itself answered with a 4xx other than 408/429 (a bad request
 * fails the same way each time); the container's own error is rebuilt from `OriginalMessage`.
 *
 * `executorOptions`: `endpointName` (required), `region`, `targetVariant`, `endpointUrl`, `timeoutMs`,
 * `retries`, `maxBatchSize` (16), `invocationTimeoutMs` (60 000), and the shared resilience knobs.
 *
 * @example
 * ```ts
 * import { DiffusionEngine } from "../engine/engine.js";
 * const engine = await DiffusionEngine.create({
 *   executorClass: "sagemaker",
 *   executorOptions: { endpointName: "omni-diffusion", region: "eu-west-1", targetVariant: "AllTraffic" },
 * });
 * ```
 */
export class SageMakerDiffusionExecutor extends RemoteExecutor<SageMakerRuntimeClient, SageMakerOptions> {
  /** Its far end (an `omni-diffusion worker serve` container) merges overlapping calls into its step loops: each request goes at once. */
  static override readonly supportsContinuousBatching: boolean = true;
  /** Native image size of the served model (from `getStats` at start-up), for payload estimates. */
  #nativeSize = { width: FALLBACK_SIDE, height: FALLBACK_SIDE };
  /** Each batch's request dicts, made once when it is planned and sent by every attempt at it. */
  readonly #payloads = new BatchPayloads((batch) => batch.map(requestToDict));
  /** The AWS SDK, imported when the executor starts: importing the package does not load it. */
  #sdk: typeof import("@aws-sdk/client-sagemaker-runtime") | null = null;

  constructor(config: OmniDiffusionConfig) {
    super(config, sagemakerOptionsSchema);
  }

  get #aws(): typeof import("@aws-sdk/client-sagemaker-runtime") {
    if (!this.#sdk) throw new WorkerError("SageMakerDiffusionExecutor is not initialised; await init() first");
    return this.#sdk;
  }

  protected override async initExecutor(): Promise<void> {
    // The SDK's own switch for its "upgrade Node" notice, printed on every run otherwise; scoped to an
    // unset variable, so a user who sets it (to "false") still sees the notice.
    process.env[AWS_NODE_WARNING_ENV] ??= "true";
    this.#sdk = await import("@aws-sdk/client-sagemaker-runtime");
    await super.initExecutor();
    try {
      const stats = (await this.collectiveRpc("getStats", { uniqueReplyRank: 0, timeout: this.options.healthTimeoutMs })) as { model?: { width?: number; height?: number } };
      if (stats?.model?.width && stats.model.height) this.#nativeSize = { width: stats.model.width, height: stats.model.height };
    } catch {
      // Estimates then assume FALLBACK_SIDE: larger than the tiny models, so still safe.
    }
  }

  protected endpointNames(): string[] {
    return [this.options.endpointName];
  }

  protected connect(): SageMakerRuntimeClient {
    const o = this.options;
    return new this.#aws.SageMakerRuntimeClient({ region: o.region, endpoint: o.endpointUrl, maxAttempts: 1 });
  }

  protected async disconnect(client: SageMakerRuntimeClient): Promise<void> {
    client.destroy();
  }

  protected override callLimit(): { ms: number; note: string } {
    const ms = this.options.invocationTimeoutMs;
    return { ms, note: `a SageMaker invocation may run at most ${ms}ms: send fewer requests per call (executorOptions.maxBatchSize) or fewer steps` };
  }

  /** Worst-case bytes of one request's part of a response (raw RGB per image, base64, JSON overhead). */
  #responseBytes(r: OmniDiffusionRequest): number {
    const w = r.width ?? this.#nativeSize.width;
    const h = r.height ?? this.#nativeSize.height;
    const latents = r.returnTrajectoryLatents ? ((r.numInferenceSteps ?? 50) + 1) * r.numOutputsPerPrompt * w * h * 0.5 : 0;
    return Math.ceil(((r.numOutputsPerPrompt * (w * h * 3 + 1024) + latents) * 4) / 3) + 1024;
  }

  /** Greedy split: invocations stay under 6 MB both ways and under `maxBatchSize`; a request too big alone is refused. */
  protected override planBatches(requests: OmniDiffusionRequest[]): BatchPlan {
    const limit = SAGEMAKER_PAYLOAD_LIMIT_BYTES;
    const batches: OmniDiffusionRequest[][] = [];
    const rejected: Record<string, OmniError> = {};
    let cur: OmniDiffusionRequest[] = [];
    // Each request's dict is made once: sized here, then sent by every attempt at its batch.
    let dicts: RequestDict[] = [];
    let reqBytes = 0;
    let resBytes = 0;
    for (const r of requests) {
      const dict = requestToDict(r);
      const q = Buffer.byteLength(JSON.stringify(dict)) + 16;
      const s = this.#responseBytes(r);
      if (q > limit || s > limit) {
        rejected[r.requestId] = new ValidationError(
          `request ${r.requestId} would ${q > limit ? "send" : "receive"} about ${((q > limit ? q : s) / 1e6).toFixed(1)} MB, past SageMaker's 6 MB payload limit; lower numOutputsPerPrompt or the image size`,
          { field: q > limit ? "prompt" : "numOutputsPerPrompt", statusCode: 413, data: { limitBytes: limit } },
        );
        continue;
      }
      if (cur.length && (cur.length >= this.options.maxBatchSize || reqBytes + q > limit || resBytes + s > limit)) {
        batches.push(cur);
        this.#payloads.set(cur, dicts);
        cur = [];
        dicts = [];
        reqBytes = resBytes = 0;
      }
      cur.push(r);
      dicts.push(dict);
      reqBytes += q;
      resBytes += s;
    }
    if (cur.length) {
      batches.push(cur);
      this.#payloads.set(cur, dicts);
    }
    return { batches, rejected };
  }

  /** One InvokeEndpoint with a JSON body; the remaining deadline travels in the custom attributes. */
  async #invoke(endpoint: Endpoint<SageMakerRuntimeClient>, body: unknown, deadline: Deadline): Promise<unknown> {
    const o = this.options;
    const command = new this.#aws.InvokeEndpointCommand({
      EndpointName: o.endpointName,
      Body: Buffer.from(JSON.stringify(body)),
      ContentType: "application/json",
      Accept: "application/json",
      TargetVariant: o.targetVariant,
      CustomAttributes: `timeout_ms=${Math.max(1, Math.floor(deadline.remaining()))}`,
    });
    let text: string;
    try {
      const res = await endpoint.client.send(command, { abortSignal: deadline.signal });
      text = Buffer.from(res.Body ?? new Uint8Array()).toString("utf8");
    } catch (err) {
      if (deadline.signal.aborted) throw deadline.signal.reason;
      throw sdkError(err, endpoint.url);
    }
    try {
      return JSON.parse(text);
    } catch (err) {
      throw new TransportError(`${endpoint.url}: the invocation's response is not JSON`, { cause: err, retryable: false, data: { endpoint: endpoint.url } });
    }
  }

  protected async generateOn(ctx: AttemptContext<SageMakerRuntimeClient>, batch: OmniDiffusionRequest[]): Promise<DiffusionOutput> {
    const reply = await this.#invoke(ctx.endpoint, { requests: this.#payloads.of(batch) }, ctx.deadline);
    return DiffusionOutput.merge(outputsOf(reply, ctx.endpoint.url).map((o) => DiffusionOutput.fromDict(o)));
  }

  protected async rpcOn(ctx: AttemptContext<SageMakerRuntimeClient>, method: string, opts: CollectiveRpcOptions): Promise<unknown> {
    const rpc = { method, args: opts.args ?? [], kwargs: opts.kwargs ?? {}, unique_reply_rank: opts.uniqueReplyRank ?? null, timeout: Math.max(1, Math.floor(ctx.deadline.remaining())) };
    const reply = (await this.#invoke(ctx.endpoint, { rpc }, ctx.deadline)) as { result?: unknown } | null;
    return reply?.result ?? null;
  }

  protected async healthOn(endpoint: Endpoint<SageMakerRuntimeClient>, deadline: Deadline): Promise<void> {
    const reply = (await this.#invoke(endpoint, { health: {} }, deadline)) as { status?: unknown; reason?: unknown } | null;
    if (reply?.status !== "ok") throw new UnhealthyError(`${endpoint.url}: ${String(reply?.reason ?? "not ready")}`, { data: { endpoint: endpoint.url } });
  }
}

interface SdkError {
  name?: string;
  message?: string;
  code?: string;
  OriginalStatusCode?: number;
  OriginalMessage?: string;
  $metadata?: { httpStatusCode?: number };
  $retryable?: unknown;
}

/** AWS error names that mean the credentials themselves were refused (wrong, expired, unsigned). */
const AUTH_FAILURES = new Set([
  "UnrecognizedClientException",
  "InvalidSignatureException",
  "ExpiredTokenException",
  "ExpiredToken",
  "InvalidClientTokenId",
  "IncompleteSignature",
  "MissingAuthenticationToken",
  "SignatureDoesNotMatch",
]);

const THROTTLING = new Set(["ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded", "ProvisionedThroughputExceededException"]);

/** An SDK failure as an OmniError (see the class comment for what is retryable). */
function sdkError(err: unknown, endpoint: string): OmniError {
  const e = (err ?? {}) as SdkError;
  const status = e.$metadata?.httpStatusCode;
  const data = { endpoint, awsError: e.name, status };
  if (e.name === "ModelError") {
    const original = e.OriginalStatusCode ?? 500;
    let body: unknown = e.OriginalMessage;
    try {
      body = JSON.parse(e.OriginalMessage ?? "");
    } catch {
      // Not JSON: the container's text is the message.
    }
    // The container's own answer decides: its error class, and retryable for 408/429/5xx.
    const remote = errorFromResponse(original, body, endpoint);
    (remote.data as Record<string, unknown>).awsError = "ModelError";
    return remote;
  }
  if (THROTTLING.has(e.name ?? "")) return new QueueFullError(`${endpoint}: throttled by SageMaker (${e.name}): ${e.message}`, { cause: err, data });
  if (e.name === "ModelNotReadyException") return new UnhealthyError(`${endpoint}: the model is not ready: ${e.message}`, { cause: err, data });
  if (e.name === "CredentialsProviderError") return new ConfigError(`no AWS credentials for ${endpoint}: ${e.message}`, { cause: err, data });
  // AWS tells a refused identity by the error's name (its JSON protocol answers several of them with a 400).
  const message = `${endpoint}: ${e.name ?? "error"}${status ? ` (${status})` : ""}: ${e.message}`;
  if (AUTH_FAILURES.has(e.name ?? "") || status === 401) return new UnauthorizedError(message, { cause: err, data });
  if (e.name === "AccessDeniedException" || status === 403) return new PermissionError(message, { cause: err, data });
  if (status === 404) return new NotFoundError(message, { cause: err, data });
  if (typeof status === "number") {
    const retryable = isRetryableStatus(status) || e.name === "ServiceUnavailable" || e.name === "InternalFailure" || e.name === "InternalDependencyException";
    return new TransportError(`${endpoint}: ${e.name ?? "error"} (${status}): ${e.message}`, { cause: err, data, retryable });
  }
  return connectionError(err, endpoint);
}
