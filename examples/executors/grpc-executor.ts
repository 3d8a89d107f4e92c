/**
 * The quick-start's "Pattern 2: gRPC Service", working: a custom executor that calls an
 * `omni-diffusion worker`'s gRPC service (proto/omni_diffusion.proto) with @grpc/grpc-js. `to_proto` and
 * `from_proto` are the package's `requestToProto` and `outputFromProto`.
 *
 * Deliberately small: one endpoint, no retries, no streaming. The built-in `executorClass: "grpc"` adds
 * balancing, retries, circuit breakers and step progress on top of the same service.
 *
 * From the repository root, with tsx loaded to import a .ts file (`NODE_OPTIONS="--import tsx"`):
 *
 *   npx omni-diffusion worker --grpc-port 50051 &
 *   engine = await DiffusionEngine.create({
 *     executorClass: "./examples/executors/grpc-executor.ts#GrpcExecutor",
 *     executorOptions: { address: "127.0.0.1:50051" },
 *   });
 */
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import {
  DiffusionExecutor,
  DiffusionOutput,
  PROTO_PATH,
  TransportError,
  UnhealthyError,
  outputFromProto,
  requestToProto,
  type CollectiveRpcOptions,
  type ExecuteOptions,
  type OmniDiffusionRequest,
  type ProtoGenerateReply,
} from "omni-diffusion";

type Unary = (req: unknown, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: any) => void) => void;

export class GrpcExecutor extends DiffusionExecutor {
  static override readonly isRemote = true;
  #client: grpc.Client | null = null;

  /** Load the proto and open a channel to the worker. */
  protected async initExecutor(): Promise<void> {
    const def = protoLoader.loadSync(PROTO_PATH, { keepCase: true, longs: Number, defaults: true, oneofs: true });
    const pkg = grpc.loadPackageDefinition(def) as any;
    const address = String(this.config.executorOptions.address ?? "127.0.0.1:50051");
    this.#client = new pkg.omni_diffusion.v1.OmniDiffusion(address, grpc.credentials.createInsecure(), {
      "grpc.max_receive_message_length": 64 * 1024 * 1024,
    });
  }

  /** One unary call with a deadline; a gRPC failure becomes a TransportError. */
  #call<T>(method: string, req: unknown, timeoutMs: number): Promise<T> {
    this.assertOpen();
    const fn = (this.#client as unknown as Record<string, Unary>)[method]!.bind(this.#client);
    return new Promise<T>((resolve, reject) =>
      fn(req, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(new TransportError(`${method}: ${err.details}`, { cause: err })) : resolve(res))),
    );
  }

  override async executeModel(requests: OmniDiffusionRequest[], opts: ExecuteOptions = {}): Promise<DiffusionOutput> {
    const reply = await this.#call<ProtoGenerateReply>("Generate", { requests: requests.map((r) => requestToProto(r.toDict())) }, opts.timeout ?? this.config.rpcTimeoutMs);
    return DiffusionOutput.merge(reply.outputs.map((o) => outputFromProto(o)));
  }

  override async collectiveRpc(method: string, opts: CollectiveRpcOptions = {}): Promise<unknown> {
    const req = { method, args_json: JSON.stringify(opts.args ?? []), kwargs_json: JSON.stringify(opts.kwargs ?? {}), unique_reply_rank: opts.uniqueReplyRank };
    const reply = await this.#call<{ result_json: string }>("CollectiveRpc", req, opts.timeout ?? this.config.rpcTimeoutMs);
    return JSON.parse(reply.result_json);
  }

  override async checkHealth(opts: { timeout?: number } = {}): Promise<void> {
    const reply = await this.#call<{ ready: boolean; reason: string }>("Health", {}, opts.timeout ?? 5_000).catch((err: unknown) => {
      throw new UnhealthyError(`the worker is unreachable: ${(err as Error).message}`, { cause: err });
    });
    if (!reply.ready) throw new UnhealthyError(`the worker is not ready: ${reply.reason}`);
  }

  override async abortRequest(requestId: string): Promise<void> {
    await this.#call("Abort", { request_ids: [requestId] }, 5_000);
  }

  protected async shutdown(): Promise<void> {
    this.#client?.close();
  }
}
