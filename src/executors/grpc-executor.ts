import type * as grpc from "@grpc/grpc-js";
import type { OmniDiffusionConfig } from "../core/config.js";
import { DiffusionOutput } from "../core/output.js";
import type { OmniDiffusionRequest } from "../core/request.js";
import { NotFoundError, OmniError, PermissionError, TransportError, UnauthorizedError, UnhealthyError, ValidationError, WorkerError } from "../errors/omni-error.js";
import type { StepProgress } from "../core/progress.js";
import type { CollectiveRpcOptions } from "./base.js";
import type { Deadline } from "../policies/deadline.js";
import type { Endpoint } from "../policies/endpoint-pool.js";
import { outputFromProto, type ProtoGenerateEvent, type ProtoGenerateReply, type ProtoHealthReply } from "../protocol/proto-codec.js";
import { requestToProtoMessage } from "../protocol/request-codec.js";
import { BatchPayloads } from "./shared/batch-payloads.js";
import { RemoteExecutor } from "./shared/remote-executor.js";
import { hostPort, requireEndpoints, workerRemoteOptionsSchema, type RemoteOptions } from "./shared/remote-options.js";
import type { AttemptContext } from "../policies/remote-policy.js";

/** gRPC status codes this executor tells apart (grpc-js itself is imported only when the executor starts). */
const GRPC = { INVALID_ARGUMENT: 3, NOT_FOUND: 5, PERMISSION_DENIED: 7, UNIMPLEMENTED: 12, UNAVAILABLE: 14, UNAUTHENTICATED: 16 } as const;
/** grpc-js `connectivityState.TRANSIENT_FAILURE`: the channel could not connect. */
const TRANSIENT_FAILURE = 3;

type Unary = (req: unknown, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: unknown) => void) => grpc.ClientUnaryCall;
type ServerStream = (req: unknown, md: grpc.Metadata, opts: grpc.CallOptions) => grpc.ClientReadableStream<unknown>;

/**
 * Sends work to `omni-diffusion worker` servers over gRPC (`proto/omni_diffusion.proto`, `@grpc/grpc-js`).
 * With a progress listener (the engine always has one) a batch runs as `GenerateStream`, so step
 * progress reaches the engine as the server makes it; otherwise as the unary `Generate`.
 *
 * The deadline is the gRPC call deadline (the server stops work past it); UNAVAILABLE and
 * RESOURCE_EXHAUSTED are retried with backoff on another endpoint; the rest of the resilience layer
 * (balancing, breakers, metrics) is shared with the other remote executors. Channels reconnect quickly
 * after a server restart. `collectiveRpc` goes to one endpoint and returns that server's ranks' replies.
 *
 * `executorOptions`: `endpoints` (`host:port`, required), `apiKey` (sent as `authorization: Bearer`),
 * `timeoutMs`, `retries`, and the shared resilience knobs.
 *
 * @example
 * ```ts
 * import { DiffusionEngine } from "../engine/engine.js";
 * const engine = await DiffusionEngine.create({ executorClass: "grpc", executorOptions: { endpoints: ["gpu-1:50051"] } });
 * ```
 */
export class GrpcDiffusionExecutor extends RemoteExecutor<grpc.Client, RemoteOptions> {
  static override readonly supportsAbortMidStep: boolean = true;
  /** Its far end (an `omni-diffusion worker`) merges overlapping calls into its step loops: each request goes at once. */
  static override readonly supportsContinuousBatching: boolean = true;
  /** Each batch's Generate message, encoded once for all its attempts (images as PNG bytes, no base64). */
  readonly #payloads = new BatchPayloads((batch) => ({ requests: batch.map(requestToProtoMessage) }));

  /** The codec (and with it grpc-js), imported when the executor starts: importing the package does not load gRPC. */
  #codec: typeof import("../protocol/grpc-codec.js") | null = null;

  constructor(config: OmniDiffusionConfig) {
    super(config, workerRemoteOptionsSchema);
  }

  get #c(): typeof import("../protocol/grpc-codec.js") {
    if (!this.#codec) throw new WorkerError("GrpcDiffusionExecutor is not initialised; await init() first");
    return this.#codec;
  }

  protected override async initExecutor(): Promise<void> {
    this.#codec = await import("../protocol/grpc-codec.js");
    await super.initExecutor();
  }

  protected endpointNames(): string[] {
    return requireEndpoints(this.options.endpoints, "GrpcDiffusionExecutor").map(hostPort);
  }

  protected connect(endpoint: string): grpc.Client {
    return this.#c.createClient(endpoint);
  }

  protected async disconnect(client: grpc.Client): Promise<void> {
    client.close();
  }

  #metadata(): grpc.Metadata {
    return this.#c.callMetadata(this.options.apiKey);
  }

  /** A failed call as an OmniError: the codec's, typed by status when the server sent no error of its own. */
  #error(err: grpc.ServiceError, endpoint: Endpoint<grpc.Client>): OmniError {
    const e = this.#c.errorFromGrpc(err, endpoint.url);
    if (!(e instanceof TransportError) || e.data.remote !== undefined) return e;
    const opts = { cause: err, data: e.data };
    switch (err.code) {
      case GRPC.UNAUTHENTICATED:
        return new UnauthorizedError(e.message, opts);
      case GRPC.PERMISSION_DENIED:
        return new PermissionError(e.message, opts);
      case GRPC.NOT_FOUND:
      case GRPC.UNIMPLEMENTED:
        return new NotFoundError(e.message, opts);
      case GRPC.INVALID_ARGUMENT:
        return new ValidationError(e.message, opts);
      case GRPC.UNAVAILABLE:
        // No connection could be made at all (refused, no route): the channel says so, not the message text.
        if (endpoint.client.getChannel().getConnectivityState(false) !== TRANSIENT_FAILURE) return e;
        return unreachableError(err, endpoint.url, e.data);
      default:
        return e;
    }
  }

  /** One unary call, cancelled when the deadline's signal aborts. */
  #unary<T>(endpoint: Endpoint<grpc.Client>, method: string, req: unknown, deadline: Deadline): Promise<T> {
    const fn = (endpoint.client as unknown as Record<string, Unary>)[method]!.bind(endpoint.client);
    return new Promise<T>((resolve, reject) => {
      const call = fn(req, this.#metadata(), { deadline: deadline.at }, (err, res) => {
        deadline.signal.removeEventListener("abort", cancel);
        if (err) reject(this.#error(err, endpoint));
        else resolve(res as T);
      });
      const cancel = () => call.cancel();
      deadline.signal.addEventListener("abort", cancel, { once: true });
    });
  }

  protected async generateOn(ctx: AttemptContext<grpc.Client>, batch: OmniDiffusionRequest[], onProgress?: (p: StepProgress) => void): Promise<DiffusionOutput> {
    const req = this.#payloads.of(batch);
    const reply = onProgress ? await this.#stream(ctx, req, onProgress) : await this.#unary<ProtoGenerateReply>(ctx.endpoint, "Generate", req, ctx.deadline);
    return DiffusionOutput.merge((reply.outputs ?? []).map(outputFromProto));
  }

  /** GenerateStream: progress events, then one result event. */
  #stream(ctx: AttemptContext<grpc.Client>, req: unknown, onProgress: (p: StepProgress) => void): Promise<ProtoGenerateReply> {
    const { endpoint, deadline } = ctx;
    const fn = (endpoint.client as unknown as Record<string, ServerStream>).GenerateStream!.bind(endpoint.client);
    return new Promise<ProtoGenerateReply>((resolve, reject) => {
      const call = fn(req, this.#metadata(), { deadline: deadline.at });
      let result: ProtoGenerateReply | null = null;
      const cancel = () => call.cancel();
      deadline.signal.addEventListener("abort", cancel, { once: true });
      call.on("data", (ev: ProtoGenerateEvent) => {
        if (ev.progress) onProgress({ requestId: ev.progress.request_id, step: ev.progress.step, totalSteps: ev.progress.total_steps });
        else if (ev.result) result = ev.result;
      });
      call.on("error", (err: grpc.ServiceError) => {
        deadline.signal.removeEventListener("abort", cancel);
        reject(this.#error(err, endpoint));
      });
      call.on("end", () => {
        deadline.signal.removeEventListener("abort", cancel);
        if (result) resolve(result);
        else reject(new TransportError(`${endpoint.url}: GenerateStream ended without a result`, { data: { endpoint: endpoint.url } }));
      });
    });
  }

  protected async rpcOn(ctx: AttemptContext<grpc.Client>, method: string, opts: CollectiveRpcOptions): Promise<unknown> {
    const reply = await this.#unary<{ result_json: string }>(
      ctx.endpoint,
      "CollectiveRpc",
      { method, args_json: JSON.stringify(opts.args ?? []), kwargs_json: JSON.stringify(opts.kwargs ?? {}), unique_reply_rank: opts.uniqueReplyRank },
      ctx.deadline,
    );
    return reply.result_json ? JSON.parse(reply.result_json) : null;
  }

  protected async healthOn(endpoint: Endpoint<grpc.Client>, deadline: Deadline): Promise<void> {
    const reply = await this.#unary<ProtoHealthReply>(endpoint, "Health", {}, deadline);
    if (!reply.ready) throw new UnhealthyError(`${endpoint.url}: ${reply.reason || "not ready"}`, { data: { endpoint: endpoint.url } });
  }

  protected override async abortOn(endpoint: Endpoint<grpc.Client>, requestIds: string[], deadline: Deadline): Promise<void> {
    await this.#unary(endpoint, "Abort", { request_ids: requestIds }, deadline);
  }
}

/**
 * A channel that could not connect, in one clean line. grpc-js says "No connection established. Last
 * error: Error: connect ECONNREFUSED 127.0.0.1:50051. Resolution note: " (the note often empty); this keeps
 * the socket error, names it in words, and records its errno as the HTTP transport does.
 */
function unreachableError(err: grpc.ServiceError, endpoint: string, data: Record<string, unknown>): TransportError {
  const details = err.details || err.message;
  const last = /Last error: (?:Error: )?(.*?)\.?(?: Resolution note: (.*))?$/s.exec(details);
  const cause = (last?.[1] ?? details).trim();
  const note = last?.[2]?.trim();
  const errno = /\b(E[A-Z]{3,})\b/.exec(cause)?.[1];
  const words = errno ? ERRNO_WORDS[errno] : undefined;
  const message = `${endpoint}: gRPC UNAVAILABLE: ${words ? `${words} (${cause})` : cause}${note ? `; ${note}` : ""}`;
  return new TransportError(message, { cause: err, data: { ...data, unreachable: true, ...(errno ? { errno } : {}) } });
}

/** What a socket errno means, for the messages above. */
const ERRNO_WORDS: Record<string, string> = {
  ECONNREFUSED: "connection refused: nothing listens there",
  EHOSTUNREACH: "no route to the host",
  ENETUNREACH: "the network is unreachable",
  ENOTFOUND: "unknown host",
  ETIMEDOUT: "the connection timed out",
  ECONNRESET: "the connection was reset",
};
