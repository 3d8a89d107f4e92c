/**
 * The quick-start's "Pattern 3: Cloud Service", working: a custom executor that calls an
 * `omni-diffusion worker` image deployed as a SageMaker endpoint, through InvokeEndpoint
 * (@aws-sdk/client-sagemaker-runtime, credentials from the standard AWS chain). The body is exactly the
 * quick-start's: a JSON array of `request.toDict()`; the container answers with one DiffusionOutput dict.
 *
 * Deliberately small: no batch splitting, no retries. The built-in `executorClass: "sagemaker"` keeps
 * invocations under SageMaker's 6 MB / 60 s limits and retries throttling and model errors.
 *
 * From the repository root, with tsx loaded to import a .ts file (`NODE_OPTIONS="--import tsx"`):
 *
 *   engine = await DiffusionEngine.create({
 *     executorClass: "./examples/executors/sagemaker-executor.ts#AwsExecutor",
 *     executorOptions: { endpointName: "my-diffusion-endpoint", region: "eu-west-1" },
 *   });
 */
import { InvokeEndpointCommand, SageMakerRuntimeClient } from "@aws-sdk/client-sagemaker-runtime";
import {
  DiffusionExecutor,
  DiffusionOutput,
  UnhealthyError,
  type CollectiveRpcOptions,
  type ExecuteOptions,
  type OmniDiffusionRequest,
} from "omni-diffusion";

export class AwsExecutor extends DiffusionExecutor {
  static override readonly isRemote = true;
  #client: SageMakerRuntimeClient | null = null;
  #endpoint = "my-diffusion-endpoint";

  protected async initExecutor(): Promise<void> {
    const o = this.config.executorOptions as { endpointName?: string; region?: string; endpointUrl?: string };
    this.#endpoint = o.endpointName ?? this.#endpoint;
    this.#client = new SageMakerRuntimeClient({ region: o.region, endpoint: o.endpointUrl });
  }

  async #invoke(body: unknown, timeoutMs: number): Promise<any> {
    this.assertOpen();
    const response = await this.#client!.send(
      new InvokeEndpointCommand({ EndpointName: this.#endpoint, Body: JSON.stringify(body), ContentType: "application/json" }),
      { abortSignal: AbortSignal.timeout(Math.min(timeoutMs, 60_000)) },
    );
    return JSON.parse(Buffer.from(response.Body!).toString("utf8"));
  }

  override async executeModel(requests: OmniDiffusionRequest[], opts: ExecuteOptions = {}): Promise<DiffusionOutput> {
    const payload = requests.map((r) => r.toDict());
    return DiffusionOutput.fromDict(await this.#invoke(payload, opts.timeout ?? this.config.rpcTimeoutMs));
  }

  /** The worker image also takes `{"rpc": {...}}` invocations. */
  override async collectiveRpc(method: string, opts: CollectiveRpcOptions = {}): Promise<unknown> {
    const rpc = { method, args: opts.args ?? [], kwargs: opts.kwargs ?? {}, unique_reply_rank: opts.uniqueReplyRank ?? null };
    return (await this.#invoke({ rpc }, opts.timeout ?? this.config.rpcTimeoutMs)).result;
  }

  override async checkHealth(opts: { timeout?: number } = {}): Promise<void> {
    const reply = await this.#invoke({ health: {} }, opts.timeout ?? 5_000).catch((err: unknown) => {
      throw new UnhealthyError(`endpoint ${this.#endpoint} failed its health invocation: ${(err as Error).message}`, { cause: err });
    });
    if (reply.status !== "ok") throw new UnhealthyError(`endpoint ${this.#endpoint} is not ready`);
  }

  override async abortRequest(): Promise<void> {
    this.assertOpen(); // a synchronous invocation cannot be stopped from outside
  }

  protected async shutdown(): Promise<void> {
    this.#client?.destroy();
  }
}
