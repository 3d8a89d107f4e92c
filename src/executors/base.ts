import { ClosedError, toOmniError, type OmniError } from "../errors/omni-error.js";
import type { OmniDiffusionConfig } from "../core/config.js";
import { DiffusionOutput } from "../core/output.js";
import type { OmniDiffusionRequest } from "../core/request.js";
import { requestToDict } from "../protocol/request-codec.js";
import type { StepProgress } from "../core/progress.js";

/** Options of {@link DiffusionExecutor.collectiveRpc} (vLLM-Omni's `collective_rpc`). */
export interface CollectiveRpcOptions {
  /** One deadline for the whole call, ms. Defaults to the config's `rpcTimeoutMs`. */
  timeout?: number;
  args?: unknown[];
  kwargs?: Record<string, unknown>;
  /** Only this rank's reply is returned (the call still reaches every rank). */
  uniqueReplyRank?: number;
  signal?: AbortSignal;
}

/** Per-call options of {@link DiffusionExecutor.executeModel}. */
export interface ExecuteOptions {
  signal?: AbortSignal;
  /**
   * Step progress of each request, where the executor can report it. The engine passes it only when
   * something listens; without it an executor need not track steps at all.
   */
  onProgress?: (p: StepProgress) => void;
  /** Deadline for the batch, ms. */
  timeout?: number;
  /**
   * Request id → decode a preview every N steps, delivered in `onProgress`'s `preview`. Executors that
   * cannot produce previews ignore it (progress then comes without `preview`).
   */
  previewEvery?: Readonly<Record<string, number>>;
}

/** State of one endpoint of an executor (a worker rank, a remote URL), for health pages and metrics. */
export interface EndpointState {
  /** Stable name, e.g. `rank-0` or a URL. */
  endpoint: string;
  /** Free-form state such as `ready`, `restarting`, `failed`, `open`, `half-open`. */
  state: string;
  /** How often the endpoint was restarted or reconnected. */
  restarts: number;
}

/** Called once when the executor notices a failure it cannot recover from (all workers gone, endpoint lost). */
export type FailureCallback = (err: OmniError) => void;

export type DiffusionExecutorClass = (abstract new (config: OmniDiffusionConfig) => DiffusionExecutor) & {
  readonly isRemote?: boolean;
  readonly supportsAbortMidStep?: boolean;
  readonly supportsContinuousBatching?: boolean;
};

/**
 * The pluggable execution layer (vLLM-Omni's `DiffusionExecutor`). Subclasses implement `initExecutor`,
 * `collectiveRpc`, `checkHealth` and `shutdown`; `executeModel`, `sleep` and `wakeUp` are thin wrappers
 * over `collectiveRpc` that a subclass may override.
 *
 * Unlike the Python original, `close()` really calls `shutdown()` (once, however often it is called),
 * and every call after `close()` fails with a ClosedError.
 */
export abstract class DiffusionExecutor {
  /** True for executors that forward work over the network. */
  static readonly isRemote: boolean = false;
  /** True when an abort takes effect between denoising steps (not only between batches). */
  static readonly supportsAbortMidStep: boolean = false;
  /**
   * True when overlapping `executeModel` calls share denoising steps on the workers (`batching:
   * "continuous"`): the engine then sends each request on its own, at once. Otherwise the engine batches
   * compatible requests itself and runs `continuous` as `request`.
   */
  static readonly supportsContinuousBatching: boolean = false;

  readonly config: OmniDiffusionConfig;
  #initPromise: Promise<void> | null = null;
  #closePromise: Promise<void> | null = null;
  #failureCallbacks: FailureCallback[] = [];

  constructor(config: OmniDiffusionConfig) {
    this.config = config;
  }

  /** Connects / starts workers. Called once by {@link init}. */
  protected abstract initExecutor(): Promise<void>;

  /** Calls `method` on every rank; returns every rank's reply in rank order, or only `uniqueReplyRank`'s. */
  abstract collectiveRpc(method: string, opts?: CollectiveRpcOptions): Promise<unknown>;

  /** Throws (UnhealthyError) when the executor cannot serve. A real round trip within a deadline. */
  abstract checkHealth(opts?: { timeout?: number; signal?: AbortSignal }): Promise<void>;

  /** Releases every resource (processes, sockets). Called once by {@link close}. */
  protected abstract shutdown(): Promise<void>;

  /** Runs `initExecutor` once; later calls return the same promise. */
  init(): Promise<void> {
    this.#initPromise ??= this.initExecutor();
    return this.#initPromise;
  }

  /** Runs a batch. Default: `collectiveRpc("generate", { args: [requests], uniqueReplyRank: 0 })`. */
  async executeModel(requests: OmniDiffusionRequest[], opts: ExecuteOptions = {}): Promise<DiffusionOutput | null> {
    this.assertOpen();
    const reply = await this.collectiveRpc("generate", {
      args: [requests.map(requestToDict)],
      uniqueReplyRank: 0,
      timeout: opts.timeout,
      signal: opts.signal,
    });
    if (reply == null) return null;
    return reply instanceof DiffusionOutput ? reply : DiffusionOutput.fromDict(reply);
  }

  /** How many batches the engine may have in flight on this executor at once. Default: `numGpus` (one per rank). */
  get maxConcurrentBatches(): number {
    return Math.max(1, this.config.numGpus);
  }

  /** Each endpoint's state, for health pages and metrics. Executors without separate endpoints return []. */
  endpointStates(): EndpointState[] {
    return [];
  }

  /** Asks the workers to stop a request between steps. Executors that cannot, ignore it. */
  async abortRequest(_requestId: string): Promise<void> {
    this.assertOpen();
  }

  /** Frees model memory on every rank (drops the ONNX sessions). */
  async sleep(level = 1): Promise<unknown> {
    return this.collectiveRpc("sleep", { args: [level] });
  }

  /** Reloads what `sleep` dropped. */
  async wakeUp(tags?: string[]): Promise<unknown> {
    return this.collectiveRpc("wakeUp", { args: tags ? [tags] : [] });
  }

  /** Registers a hook fired when the executor hits an unrecoverable failure. */
  registerFailureCallback(cb: FailureCallback): void {
    this.#failureCallbacks.push(cb);
  }

  /** Subclasses call this to report an unrecoverable failure; each callback runs, errors in them are reported not thrown. */
  protected notifyFailure(err: unknown): void {
    const e = toOmniError(err);
    for (const cb of this.#failureCallbacks) {
      try {
        cb(e);
      } catch (cbErr) {
        process.emitWarning(`omni-diffusion failure callback threw: ${(cbErr as Error).message}`);
      }
    }
  }

  get isClosed(): boolean {
    return this.#closePromise !== null;
  }

  /** Throws ClosedError when the executor was closed. Call at the top of every public operation. */
  protected assertOpen(): void {
    if (this.#closePromise) throw new ClosedError(`${this.constructor.name} is closed`);
  }

  /** Shuts down once; idempotent, and awaiting it again returns the same result. */
  close(): Promise<void> {
    this.#closePromise ??= (async () => {
      // Wait for a start-up in progress so its resources are shut down too (never leak a half-started worker).
      if (this.#initPromise) await this.#initPromise.catch(() => undefined);
      await this.shutdown();
    })();
    return this.#closePromise;
  }
}
