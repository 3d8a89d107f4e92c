import { DiffusionOutput } from "../core/output.js";
import type { OmniDiffusionRequest } from "../core/request.js";
import { ClosedError, TimeoutError, UnhealthyError, ValidationError, WorkerError, toOmniError } from "../errors/omni-error.js";
import { DiffusionWorker } from "../workers/diffusion-worker.js";
import type { OmniDiffusionConfig } from "../core/config.js";
import { DiffusionExecutor, type CollectiveRpcOptions, type ExecuteOptions } from "./base.js";
import { UNIPROC_DEFAULTS, readLocalOptions } from "./shared/multiproc-options.js";
import { workerInitOf } from "./shared/worker-init.js";
import { Deadline } from "../policies/deadline.js";


/**
 * One {@link DiffusionWorker} in this process (rank 0), for debugging, tests and embedding.
 *
 * **It blocks the event loop during inference**: onnxruntime's `session.run()` is synchronous on the
 * calling thread, so timers, sockets and other requests wait while a denoising step runs. The pipeline
 * yields between steps, which is when aborts, deadlines and health pings are seen. Use the default
 * MultiprocExecutor for serving. `numGpus` is ignored: there is always exactly one rank.
 *
 * @example
 * ```ts
 * import { parseConfig } from "../core/config.js";
 * const executor = new UniprocExecutor(parseConfig({ executorClass: "uniproc" }));
 * await executor.init();
 * const [pong] = (await executor.collectiveRpc("ping")) as { rank: number }[];
 * await executor.close();
 * ```
 */
export class UniprocExecutor extends DiffusionExecutor {
  static override readonly supportsAbortMidStep: boolean = true;
  static override readonly supportsContinuousBatching: boolean = true;

  #worker: DiffusionWorker | null = null;
  readonly #opts: typeof UNIPROC_DEFAULTS;

  /** Throws ConfigError for an unknown or bad `executorOptions` value (only `healthTimeoutMs` exists here). */
  constructor(config: OmniDiffusionConfig) {
    super(config);
    this.#opts = readLocalOptions(config.executorOptions, UNIPROC_DEFAULTS, "UniprocExecutor");
  }

  protected async initExecutor(): Promise<void> {
    this.#worker = await DiffusionWorker.create(workerInitOf(this.config, 0));
  }

  /** The in-process worker (after `init`). */
  get worker(): DiffusionWorker {
    this.assertOpen();
    if (!this.#worker) throw new WorkerError("UniprocExecutor is not initialised; await init() first");
    return this.#worker;
  }

  override async collectiveRpc(method: string, opts: CollectiveRpcOptions = {}): Promise<unknown> {
    const worker = this.worker;
    if (opts.uniqueReplyRank !== undefined && opts.uniqueReplyRank !== 0) {
      throw new ValidationError(`uniqueReplyRank must be 0 for UniprocExecutor, got ${opts.uniqueReplyRank}`, { field: "uniqueReplyRank" });
    }
    const ms = opts.timeout ?? this.config.rpcTimeoutMs;
    const dl = new Deadline(ms, opts.signal, () => new TimeoutError(`collectiveRpc("${method}") timed out after ${ms}ms; no reply from rank(s) 0`, { data: { method, ranks: [0], timeoutMs: ms } }));
    try {
      const reply = await dl.race(worker.call(method, opts.args ?? [], opts.kwargs ?? {}, { deadline: dl.at, signal: dl.signal }).catch((err: unknown) => {
        throw withRank(err);
      }));
      return opts.uniqueReplyRank === 0 ? reply : [reply];
    } finally {
      dl.dispose();
    }
  }

  /** Runs the batch on the in-process worker: the validated requests as they are, no codec on either side. */
  override async executeModel(requests: OmniDiffusionRequest[], opts: ExecuteOptions = {}): Promise<DiffusionOutput> {
    const worker = this.worker;
    if (!requests.length) return new DiffusionOutput();
    const ms = opts.timeout ?? this.config.rpcTimeoutMs;
    const dl = new Deadline(ms, opts.signal, () => new TimeoutError(`executeModel timed out after ${ms}ms`, { data: { method: "generate", timeoutMs: ms } }));
    try {
      return await dl.race(worker.generateOutput(requests, { deadline: dl.at, signal: dl.signal, onProgress: opts.onProgress, previewEvery: opts.previewEvery }));
    } catch (err) {
      // The caller's signal stops the requests in the worker as an abort by id does (an extension sees it too).
      if (dl.callerAborted) for (const r of requests) worker.abort(r.requestId);
      throw err;
    } finally {
      dl.dispose();
    }
  }

  override async abortRequest(requestId: string): Promise<void> {
    this.worker.abort(requestId);
  }

  override async checkHealth(opts: { timeout?: number; signal?: AbortSignal } = {}): Promise<void> {
    const ms = opts.timeout ?? Math.min(this.config.rpcTimeoutMs, this.#opts.healthTimeoutMs);
    try {
      await this.collectiveRpc("ping", { timeout: ms, signal: opts.signal });
    } catch (err) {
      if (err instanceof ClosedError || opts.signal?.aborted) throw err;
      throw new UnhealthyError(`UniprocExecutor is unhealthy: rank 0: ${toOmniError(err).message}`, { cause: err, data: { ranks: [0] } });
    }
  }

  protected async shutdown(): Promise<void> {
    const w = this.#worker;
    this.#worker = null;
    await w?.close();
  }
}

function withRank(err: unknown) {
  const e = toOmniError(err);
  if (e.data.rank === undefined) (e.data as Record<string, unknown>).rank = 0;
  return e;
}
