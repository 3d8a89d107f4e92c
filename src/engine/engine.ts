import { AbortedError, ClosedError, OmniError, QueueFullError, ValidationError, toOmniError } from "../errors/omni-error.js";
import type { CollectiveRpcOptions, DiffusionExecutor } from "../executors/base.js";
import { resolveExecutor } from "../executors/resolve-executor.js";
import { Listeners } from "../utils/listeners.js";
import type { BatchEvent, EngineGenerateOptions, EngineStats, StepEvent } from "./engine-events.js";
import { requestOutputOf, unbuiltRequestOutput } from "./request-outputs.js";
import { BatchQueue, type QueuedRequest } from "./batch-queue.js";
import { SCHEDULER_NAMES } from "../schedulers/index.js";
import { parseConfig, requestLimitsOf, type BatchingPolicy, type OmniDiffusionConfig, type OmniDiffusionConfigInput } from "../core/config.js";
import { checkRequestLimits, rowsOfRequest, tightenLimits, type RequestLimits } from "../core/limits.js";
import type { ModelLimits } from "../core/model-limits.js";
import { fetchModelLimits, ModelLimitsBook } from "./model-limits-fetch.js";
import { OmniDiffusionRequest, type OmniDiffusionRequestInit } from "../core/request.js";
import { OmniRequestOutput } from "../core/request-output.js";
import type { StepProgress } from "../core/progress.js";

export type { BatchEvent, EngineGenerateOptions, EngineStats, StepEvent };

/**
 * The engine (vLLM-Omni's `DiffusionEngine`): validates requests against the configured limits, queues
 * them, hands them to the executor under the configured batching policy and gives every request back
 * exactly one {@link OmniRequestOutput}: its images, or its error.
 *
 * - `continuous` (default, on executors with `supportsContinuousBatching`): each request goes to the
 *   executor on its own as soon as the ranks have room (`limits.maxBatchSize` images and `maxBatchRows`
 *   rows per rank in flight); the executor routes it to the rank with the least work left and the
 *   worker's step loop lets it join the requests already denoising there.
 * - `request`: compatible requests are batched (up to `limits.maxBatchSize` images), one batch per rank at
 *   a time, each run to completion.
 * - `none`: one request per rank at a time.
 *
 * @example
 * const engine = await DiffusionEngine.create({ numGpus: 1 });
 * const [out] = await engine.step([new OmniDiffusionRequest({ prompt: "a red circle on a blue background", seed: 42 })]);
 * await engine.close();
 */
export class DiffusionEngine {
  readonly config: OmniDiffusionConfig;
  readonly executor: DiffusionExecutor;
  #queue = new BatchQueue();
  #inFlight = new Map<string, QueuedRequest>();
  #aborted = new Set<string>();
  /** The signal of each in-flight request's batch: aborted once every request of the batch was aborted. */
  #batchAbort = new Map<string, { ids: string[]; ctl: AbortController }>();
  #runningBatches = new Set<Promise<void>>();
  #dispatchTimer: NodeJS.Immediate | NodeJS.Timeout | null = null;
  #closing: Promise<void> | null = null;
  #stats = { batchesRun: 0, requestsDone: 0, requestsFailed: 0 };
  readonly #batchListeners = new Listeners<BatchEvent>("batch event");
  readonly #stepListeners = new Listeners<StepEvent>("step event");
  /** Images and (estimated) UNet rows of the requests in flight under continuous batching. */
  #flight = { images: 0, rows: 0 };
  readonly #policy: BatchingPolicy;
  readonly #requestLimits: RequestLimits;
  /** What each model can serve: the default one's from start-up, the others' once their workers have loaded them. */
  readonly #limitsBook: ModelLimitsBook;

  private constructor(config: OmniDiffusionConfig, executor: DiffusionExecutor, modelLimits: ModelLimits | null) {
    this.config = config;
    this.executor = executor;
    this.#requestLimits = requestLimitsOf(config);
    this.#limitsBook = new ModelLimitsBook(executor, config.rpcTimeoutMs, config.defaultModel, modelLimits);
    const stepLevel = (executor.constructor as { supportsContinuousBatching?: boolean }).supportsContinuousBatching === true;
    // An executor that cannot merge overlapping calls would run them side by side unbatched: batch here instead.
    this.#policy = config.batching === "continuous" && !stepLevel ? "request" : config.batching;
  }

  /** The batching policy in effect: the configured one, or `request` where the executor cannot batch by step. */
  get batching(): BatchingPolicy {
    return this.#policy;
  }

  /** Validates the config, resolves and starts the executor, optionally warms it up. */
  static async create(input: OmniDiffusionConfigInput = {}): Promise<DiffusionEngine> {
    const config = parseConfig(input);
    const Executor = await resolveExecutor(config.executorClass);
    const executor = new (Executor as unknown as new (c: OmniDiffusionConfig) => DiffusionExecutor)(config);
    try {
      await executor.init();
    } catch (err) {
      await executor.close().catch(() => undefined);
      throw err;
    }
    const engine = new DiffusionEngine(config, executor, await fetchModelLimits(executor, config.rpcTimeoutMs));
    if (config.warmup) {
      const [out] = await engine.step([new OmniDiffusionRequest({ prompt: "warm-up", numInferenceSteps: 1, seed: 0 })]);
      if (out?.error) {
        await engine.close();
        throw out.error;
      }
    }
    return engine;
  }

  /** The per-request limits of the config (core/limits.ts). */
  get requestLimits(): RequestLimits {
    return this.#requestLimits;
  }

  /** What the loaded model can serve, as rank 0 described it; null when the executor cannot say (then only the config limits apply). */
  get modelLimits(): ModelLimits | null {
    return this.#limitsBook.get(null);
  }

  /** What `model` can serve: the default model's limits, another's once a worker has described it; else null. */
  modelLimitsFor(model: string | null): ModelLimits | null {
    return this.#limitsBook.get(model);
  }

  get stats(): EngineStats {
    return { queued: this.#queue.size, inFlight: this.#inFlight.size, ...this.#stats };
  }

  /** 1-based place of a request in the engine's queue (1: next to run), or 0 when it is not queued. */
  queuePosition(requestId: string): number {
    return this.#queue.position(requestId);
  }

  get isClosed(): boolean {
    return this.#closing !== null;
  }

  /** Calls `listener` after every batch; `dispose()` unsubscribes. A throwing listener is reported, not rethrown. */
  onBatch(listener: (e: BatchEvent) => void): { dispose(): void } {
    return this.#batchListeners.add(listener);
  }

  /**
   * Calls `listener` after every denoising step of every request dispatched while it is registered;
   * `dispose()` unsubscribes. With no listener (and no request callback) workers report no steps at all.
   */
  onStep(listener: (e: StepEvent) => void): { dispose(): void } {
    return this.#stepListeners.add(listener);
  }

  /**
   * Runs a list of requests and returns one output per request, in request order. A failed request
   * yields an output whose `error` is set (this never throws for a request's own failure). `signal` aborts
   * every request of the call still queued or running (each ends with an AbortedError).
   */
  async step(requests: (OmniDiffusionRequest | OmniDiffusionRequestInit)[], opts: { signal?: AbortSignal } = {}): Promise<OmniRequestOutput[]> {
    // A request that cannot even be built (numInferenceSteps: 0) fails alone, like any other invalid request.
    const reqs = requests.map((r): OmniDiffusionRequest | OmniRequestOutput => {
      if (r instanceof OmniDiffusionRequest) return r;
      try {
        return new OmniDiffusionRequest(r);
      } catch (err) {
        return unbuiltRequestOutput(r, err);
      }
    });
    const ids = new Set<string>();
    for (const r of reqs) {
      if (ids.has(r.requestId)) throw new ValidationError(`duplicate request id ${r.requestId} in one step`, { field: "requestId" });
      ids.add(r.requestId);
    }
    return Promise.all(reqs.map((r) => (r instanceof OmniDiffusionRequest ? this.#submit(r, { signal: opts.signal }) : r)));
  }

  /**
   * Queues one request and returns the promise of its output (a failure while it runs is the output's
   * `error`). A request refused on arrival (limits, a duplicate id, a full queue, a closed engine) throws
   * here, synchronously, with nothing queued: a caller can refuse a whole call before any of it runs (the
   * worker server's 400). `opts.fieldName` and `opts.limits` as in {@link generate}.
   */
  submit(request: OmniDiffusionRequest, opts: EngineGenerateOptions = {}): Promise<OmniRequestOutput> {
    const refused: { error?: OmniError } = {};
    const out = this.#submit(request, opts, (err) => (refused.error = err));
    if (refused.error) throw refused.error;
    return out;
  }

  /**
   * Runs one request alongside other concurrent callers (the queue batches compatible requests).
   * Resolves with the output, or rejects with the request's OmniError (validation, abort, worker failure).
   * The limits are checked here, once, on submission: `opts.limits` tightens the config's (a server's own),
   * and `opts.fieldName` names the fields as the caller spelled them (a CLI flag, an API parameter).
   */
  async generate(request: OmniDiffusionRequest | OmniDiffusionRequestInit, opts: EngineGenerateOptions = {}): Promise<OmniRequestOutput> {
    const r = request instanceof OmniDiffusionRequest ? request : new OmniDiffusionRequest(request);
    const out = await this.#submit(r, opts);
    if (out.error) throw out.error;
    return out;
  }

  /** Stops a request: dropped from the queue, or stopped between denoising steps. Its caller gets an AbortedError. */
  async abort(requestId: string): Promise<boolean> {
    const queued = this.#queue.remove(requestId);
    if (queued) {
      this.#finish(queued, this.#errorOutput(queued, new AbortedError(`request ${requestId} was aborted while queued`, { data: { requestId } })));
      return true;
    }
    if (!this.#inFlight.has(requestId)) return false;
    this.#aborted.add(requestId);
    // An executor that stops requests between steps is told by id, and answers with the step each stopped
    // at. One that cannot gets its batch's signal once all of the batch was aborted (piscina's and undici's
    // convention): the call ends now instead of when the batch is done.
    const batch = this.#batchAbort.get(requestId);
    const midStep = (this.executor.constructor as { supportsAbortMidStep?: boolean }).supportsAbortMidStep === true;
    if (!midStep && batch?.ids.every((id) => this.#aborted.has(id))) batch.ctl.abort(new AbortedError(`request ${requestId} was aborted`, { data: { requestId } }));
    await this.executor.abortRequest(requestId);
    return true;
  }

  /** Throws when the executor cannot serve (dead workers, unreachable endpoint). */
  async checkHealth(opts: { timeout?: number; signal?: AbortSignal } = {}): Promise<void> {
    if (this.#closing) throw new ClosedError("engine is closed");
    await this.executor.checkHealth(opts);
  }

  /** Passes an RPC through to the executor's ranks. */
  collectiveRpc(method: string, opts?: CollectiveRpcOptions): Promise<unknown> {
    if (this.#closing) return Promise.reject(new ClosedError("engine is closed"));
    this.#limitsBook.seeRpc(method);
    return this.executor.collectiveRpc(method, opts);
  }

  /**
   * Stops accepting requests, fails queued ones with a ClosedError, lets running batches finish
   * (they end by their own deadline at worst), then shuts the executor down. Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#dispatchTimer) clearTimeout(this.#dispatchTimer as NodeJS.Timeout);
      for (const q of this.#queue.drain()) {
        this.#finish(q, this.#errorOutput(q, new ClosedError(`engine closed before request ${q.request.requestId} ran`)));
      }
      await Promise.allSettled([...this.#runningBatches]);
      await this.executor.close();
    })();
    return this.#closing;
  }

  /** Queues a request; a refusal on arrival resolves at once with its error (and is told to `onRefused`). */
  #submit(request: OmniDiffusionRequest, opts: EngineGenerateOptions, onRefused?: (err: OmniError) => void): Promise<OmniRequestOutput> {
    return new Promise<OmniRequestOutput>((resolve) => {
      const q: QueuedRequest = {
        request,
        enqueuedAt: performance.now(),
        resolve,
        onProgress: opts.onProgress,
        previewEvery: opts.previewEvery,
        signal: opts.signal,
      };
      const fail = (err: OmniError) => {
        onRefused?.(err);
        resolve(this.#errorOutput(q, err));
      };
      if (this.#closing) return fail(new ClosedError("engine is closed"));
      try {
        // The one limits check of every entry point (core/limits.ts), in the caller's spelling.
        const limits = opts.limits ? tightenLimits(this.#requestLimits, opts.limits) : this.#requestLimits;
        // Another model's rules once a worker has described it; before that, the worker that loads it checks them.
        checkRequestLimits(request, limits, this.modelLimitsFor(request.model), { fieldName: opts.fieldName, knownSchedulers: SCHEDULER_NAMES });
      } catch (err) {
        return fail(toOmniError(err));
      }
      if (this.#inFlight.has(request.requestId) || this.#queue.has(request.requestId)) {
        return fail(new ValidationError(`request id ${request.requestId} is already in use`, { field: "requestId" }));
      }
      if (this.#queue.size >= this.config.limits.maxQueue) {
        return fail(new QueueFullError(`queue is full (${this.config.limits.maxQueue} requests waiting)`));
      }
      if (opts.signal?.aborted) return fail(new AbortedError(`request ${request.requestId} was aborted before it was queued`));
      if (opts.signal) {
        q.onAbortSignal = () => void this.abort(request.requestId);
        opts.signal.addEventListener("abort", q.onAbortSignal, { once: true });
      }
      this.#queue.push(q);
      this.#scheduleDispatch();
    });
  }

  #scheduleDispatch(): void {
    if (this.#dispatchTimer || this.#closing) return;
    const fire = () => {
      this.#dispatchTimer = null;
      this.#dispatch();
    };
    // Continuous batching has nothing to wait for: a request joins the running ones at their next step.
    const windowMs = this.#policy === "continuous" ? 0 : this.config.batchWindowMs;
    this.#dispatchTimer = windowMs > 0 ? setTimeout(fire, windowMs) : setImmediate(fire);
  }

  /** Starts work while the executor has room; more waits in the queue. */
  #dispatch(): void {
    if (this.#policy === "continuous") return this.#dispatchEach();
    const maxConcurrent = this.executor.maxConcurrentBatches;
    const maxImages = this.#policy === "none" ? 1 : this.config.limits.maxBatchSize;
    while (this.#queue.size > 0 && this.#runningBatches.size < maxConcurrent && !this.#closing) {
      const batch = this.#queue.takeBatch(maxImages);
      if (!batch.length) break;
      this.#start(batch);
    }
  }

  /**
   * Continuous batching: every request on its own executor call, oldest first, while the ranks have room
   * (`limits.maxBatchSize` images and `maxBatchRows` rows each). The head of the queue is never bypassed,
   * so a big request is not starved by a stream of small ones.
   */
  #dispatchEach(): void {
    const ranks = this.executor.maxConcurrentBatches;
    const maxImages = ranks * this.config.limits.maxBatchSize;
    const maxRows = ranks * this.config.maxBatchRows;
    while (this.#queue.size > 0 && !this.#closing) {
      const r = this.#queue.peek()!.request;
      const images = r.numOutputsPerPrompt;
      // The model's default guidance is unknown here: the estimate counts guidance rows unless the request turns it off.
      const rows = rowsOfRequest(r);
      if (this.#flight.images > 0 && (this.#flight.images + images > maxImages || this.#flight.rows + rows > maxRows)) break;
      this.#flight.images += images;
      this.#flight.rows += rows;
      this.#start([this.#queue.shift()!], () => {
        this.#flight.images -= images;
        this.#flight.rows -= rows;
      });
    }
  }

  #start(batch: QueuedRequest[], onDone?: () => void): void {
    const p = this.#runBatch(batch).finally(() => {
      onDone?.();
      this.#runningBatches.delete(p);
      if (this.#queue.size) this.#scheduleDispatch();
    });
    this.#runningBatches.add(p);
  }

  async #runBatch(batch: QueuedRequest[]): Promise<void> {
    const started = performance.now();
    const abort = { ids: batch.map((q) => q.request.requestId), ctl: new AbortController() };
    for (const q of batch) {
      this.#inFlight.set(q.request.requestId, q);
      this.#batchAbort.set(q.request.requestId, abort);
    }
    this.#stats.batchesRun++;
    const byId = new Map(batch.map((q) => [q.request.requestId, q]));
    const previews = batch.filter((q) => q.onProgress && q.previewEvery && q.previewEvery > 0);
    // Step progress is asked of the executor only when something reads it: a request's own callback or an
    // onStep listener present at dispatch. Without it, workers send no message per step.
    const wantsSteps = this.#stepListeners.any || batch.some((q) => q.onProgress);
    const onProgress = (p: StepProgress) => {
      const q = byId.get(p.requestId);
      if (!q) return;
      const now = performance.now();
      const firstStep = q.firstStepAt === undefined;
      q.firstStepAt ??= now;
      this.#stepListeners.emit({ requestId: p.requestId, step: p.step, totalSteps: p.totalSteps, firstStep, sinceQueuedMs: now - q.enqueuedAt, batch: p.batch });
      q.onProgress?.(p);
    };
    let failed = 0;
    const finish = (q: QueuedRequest, out: OmniRequestOutput) => {
      if (out.error) failed++;
      this.#finish(q, out);
    };
    try {
      const out = await this.executor.executeModel(
        batch.map((q) => q.request),
        {
          timeout: this.config.rpcTimeoutMs,
          signal: abort.ctl.signal,
          onProgress: wantsSteps ? onProgress : undefined,
          ...(previews.length ? { previewEvery: Object.fromEntries(previews.map((q) => [q.request.requestId, q.previewEvery!])) } : {}),
        },
      );
      for (const q of batch) {
        if (!out) finish(q, this.#errorOutput(q, new OmniError(`executor ${this.executor.constructor.name} returned no output`, "OMNI_ERR_INTERNAL")));
        else finish(q, requestOutputOf(q, out, started));
      }
      this.#limitsBook.seeBatch(batch.map((q) => q.request.model));
    } catch (err) {
      const e = toOmniError(err);
      // Aborted through the batch's signal: each request names itself.
      const own = (q: QueuedRequest) => (abort.ctl.signal.aborted ? new AbortedError(`request ${q.request.requestId} was aborted`, { data: { requestId: q.request.requestId } }) : e);
      for (const q of batch) finish(q, this.#errorOutput(q, own(q)));
    } finally {
      for (const id of abort.ids) if (this.#batchAbort.get(id) === abort) this.#batchAbort.delete(id);
    }
    this.#batchListeners.emit({
      requests: batch.length,
      images: batch.reduce((a, q) => a + q.request.numOutputsPerPrompt, 0),
      failed,
      durationMs: performance.now() - started,
    });
  }

  #errorOutput(q: QueuedRequest, error: OmniError): OmniRequestOutput {
    const aborted = this.#aborted.has(q.request.requestId) && !(error instanceof AbortedError);
    return new OmniRequestOutput({
      requestId: q.request.requestId,
      prompt: q.request.prompt,
      seed: q.request.seed,
      error: aborted ? new AbortedError(`request ${q.request.requestId} was aborted`, { cause: error }) : error,
    });
  }

  #finish(q: QueuedRequest, out: OmniRequestOutput): void {
    this.#inFlight.delete(q.request.requestId);
    this.#aborted.delete(q.request.requestId);
    if (q.signal && q.onAbortSignal) q.signal.removeEventListener("abort", q.onAbortSignal);
    if (out.error) this.#stats.requestsFailed++;
    else this.#stats.requestsDone++;
    q.resolve(out);
  }
}
