/**
 * The quick-start's "Pattern 1: HTTP REST API", working: a custom executor that sends each batch to an
 * `omni-diffusion worker` over its HTTP/JSON API (docs/wire-protocol.md) with `fetch`.
 *
 * Deliberately small: one endpoint, no retries. The built-in `executorClass: "http"` adds balancing,
 * retries, circuit breakers and streaming on top of the same protocol.
 *
 * From the repository root, with tsx loaded to import a .ts file (`NODE_OPTIONS="--import tsx"`):
 *
 *   npx omni-diffusion worker --http-port 8000 &
 *   engine = await DiffusionEngine.create({
 *     executorClass: "./examples/executors/http-rest-executor.ts#HttpRestExecutor",
 *     executorOptions: { url: "http://127.0.0.1:8000" },
 *   });
 */
import {
  DiffusionExecutor,
  DiffusionOutput,
  TransportError,
  UnhealthyError,
  deserializeError,
  type CollectiveRpcOptions,
  type ExecuteOptions,
  type OmniDiffusionRequest,
  type SerializedError,
} from "omni-diffusion";

/** What the worker answers: outputs, an RPC result, or an error. */
interface Reply {
  outputs?: unknown[];
  result?: unknown;
  error?: SerializedError;
}

export class HttpRestExecutor extends DiffusionExecutor {
  static override readonly isRemote = true;
  #url = "";

  /** Set up the connection to your system: here, just its base URL. */
  protected async initExecutor(): Promise<void> {
    this.#url = String(this.config.executorOptions.url ?? "http://127.0.0.1:8000").replace(/\/+$/, "");
  }

  /** POSTs JSON, and turns an error answer back into the server's own OmniError. */
  async #post(path: string, body: unknown, timeoutMs: number, signal?: AbortSignal): Promise<Reply> {
    const timeout = AbortSignal.timeout(timeoutMs);
    const res = await fetch(`${this.#url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-omni-timeout-ms": String(timeoutMs) },
      body: JSON.stringify(body),
      signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
    }).catch((err: unknown) => {
      throw new TransportError(`${this.#url}${path}: ${(err as Error).message}`, { cause: err });
    });
    const json = (await res.json()) as Reply;
    if (!res.ok) throw json?.error ? deserializeError(json.error) : new TransportError(`${this.#url}${path} answered ${res.status}`);
    return json;
  }

  override async executeModel(requests: OmniDiffusionRequest[], opts: ExecuteOptions = {}): Promise<DiffusionOutput> {
    this.assertOpen();
    const reply = await this.#post("/v1/diffusion/generate", { requests: requests.map((r) => r.toDict()) }, opts.timeout ?? this.config.rpcTimeoutMs, opts.signal);
    // One DiffusionOutput per request comes back; the engine wants one for the batch.
    return DiffusionOutput.merge((reply.outputs ?? []).map((o) => DiffusionOutput.fromDict(o)));
  }

  override async collectiveRpc(method: string, opts: CollectiveRpcOptions = {}): Promise<unknown> {
    this.assertOpen();
    const timeout = opts.timeout ?? this.config.rpcTimeoutMs;
    const body = { method, args: opts.args ?? [], kwargs: opts.kwargs ?? {}, unique_reply_rank: opts.uniqueReplyRank ?? null, timeout };
    return (await this.#post("/v1/diffusion/rpc", body, timeout, opts.signal)).result;
  }

  override async checkHealth(opts: { timeout?: number } = {}): Promise<void> {
    this.assertOpen();
    const res = await fetch(`${this.#url}/health`, { signal: AbortSignal.timeout(opts.timeout ?? 5_000) }).catch((err: unknown) => {
      throw new UnhealthyError(`${this.#url} is unreachable: ${(err as Error).message}`, { cause: err });
    });
    if (!res.ok) throw new UnhealthyError(`${this.#url} is not ready: ${((await res.json()) as { reason?: string }).reason}`);
  }

  override async abortRequest(requestId: string): Promise<void> {
    this.assertOpen();
    await this.#post("/v1/diffusion/abort", { request_ids: [requestId] }, 5_000);
  }

  /** Nothing to release: fetch keeps no state we own. */
  protected async shutdown(): Promise<void> {}
}
