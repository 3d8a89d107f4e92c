import type { OmniDiffusionConfig } from "../core/config.js";
import { DiffusionOutput } from "../core/output.js";
import type { OmniDiffusionRequest } from "../core/request.js";
import { ClosedError, OmniError, TimeoutError, UnhealthyError, ValidationError, WorkerDiedError, WorkerError, toOmniError } from "../errors/omni-error.js";
import type { StepProgress } from "../core/progress.js";
import type { GenerateTransferKwargs } from "../protocol/worker-ipc.js";
import { DiffusionExecutor, type CollectiveRpcOptions, type EndpointState, type ExecuteOptions } from "./base.js";
import { readMultiprocOptions, type MultiprocOptions } from "./shared/multiproc-options.js";
import { Deadline } from "../policies/deadline.js";
import { workerRetryPolicy } from "../policies/worker-policies.js";
import type { RankSlot } from "./shared/rank-slot.js";
import { RankSupervisor, describeExit, type WorkerEvent } from "./shared/rank-supervisor.js";
import type { Clock } from "../utils/clock.js";
import { checkWorkersFit } from "./shared/worker-memory.js";

export type { WorkerEvent };

/**
 * The default executor: `numGpus` worker processes (`child_process.fork`), each loading the pipeline with
 * `intraOpNumThreads` onnxruntime threads, so inference never blocks the caller's event loop.
 *
 * - Start-up: every rank must send READY within `workerStartTimeoutMs`; a load failure rejects `init` with
 *   that worker's error (`data.rank`) after killing the other workers.
 * - `executeModel` spreads a batch over the ranks (data parallel, least outstanding work first, counted in
 *   image-steps still to run as progress comes in; all images of one request stay on one rank) and merges
 *   the outputs. Calls overlap: under `batching: "continuous"` a worker's step loop merges them.
 * - A worker that dies is noticed at once (its `exit` event): it is restarted, and the requests it was running
 *   are retried (up to `maxWorkerRetries`) or finish with a WorkerDiedError in `errors` — never lost.
 * - A worker that hangs (SIGSTOP, a frozen or swapping process) is noticed by its heartbeats: a thread in each
 *   worker beats every `heartbeatIntervalMs`, even while a long UNet call holds the worker's main thread, so
 *   only a process that stopped running falls silent; after `heartbeatTimeoutMs` of silence it is SIGKILLed,
 *   and then replaced and its requests retried exactly like a worker that died. Processes are owned by a
 *   {@link RankSupervisor}; restarts and request retries run under `policies/worker-policies.ts`.
 * - `shutdown` sends `shutdown`, waits `executorOptions.shutdownGraceMs`, then SIGKILLs; children are also
 *   SIGKILLed when the parent exits, and exit by themselves when the parent disappears.
 *
 * `executorOptions` (unknown names are a ConfigError): `healthTimeoutMs` (10 000), `shutdownGraceMs` (5 000),
 * `maxRestartAttempts` (3, per death), `restartBackoffMs` (250, doubled per failed attempt), `heartbeatIntervalMs`
 * (1 000; 0 turns heartbeats off), `heartbeatTimeoutMs` (10 000).
 *
 * @example
 * ```ts
 * import { parseConfig } from "../core/config.js";
 * import { OmniDiffusionRequest } from "../core/request.js";
 * const executor = new MultiprocExecutor(parseConfig({ numGpus: 2 }));
 * await executor.init();
 * const out = await executor.executeModel([new OmniDiffusionRequest({ prompt: "a red circle", numInferenceSteps: 4 })]);
 * await executor.close();
 * ```
 */
export class MultiprocExecutor extends DiffusionExecutor {
  static override readonly supportsAbortMidStep: boolean = true;
  static override readonly supportsContinuousBatching: boolean = true;
  /** A worker that dies is restarted; the conformance suite SIGKILLs one to check the recovery. */
  static readonly restartsDeadWorkers: boolean = true;

  readonly #ranks: RankSupervisor;
  /** Ranks as routing sees them: empty until init() started the processes. */
  #slots: RankSlot[] = [];
  /** Rank each in-flight request was dispatched to, for `abortRequest`. */
  #requestRank = new Map<string, RankSlot>();
  /** Aborts that arrived while their request waited for a (re)starting rank. */
  #pendingAborts = new Set<string>();
  readonly #opts: MultiprocOptions;

  /**
   * Throws ConfigError for a bad `executorOptions` value before any process starts. `deps.clock` times the
   * heartbeat deadlines (tests pass a manual clock; default: the real one).
   */
  constructor(config: OmniDiffusionConfig, deps: { clock?: Clock } = {}) {
    super(config);
    this.#opts = readMultiprocOptions(config.executorOptions);
    this.#ranks = new RankSupervisor(config, this.#opts, (err) => this.notifyFailure(err), deps.clock);
  }

  /** assertOpen, plus: init() has run (before it there are no ranks to talk to). */
  #assertStarted(): void {
    this.assertOpen();
    if (!this.#slots.length) throw new WorkerError("MultiprocExecutor is not initialised; await init() first");
  }

  /** Status of each rank, in rank order. */
  get rankStatus(): { rank: number; status: string; pid: number | undefined; load: number }[] {
    return this.#slots.map((s) => ({ rank: s.rank, status: s.status, pid: s.proc?.pid, load: s.load }));
  }

  /** One entry per rank: `rank-N`, its status, and how often it was restarted. */
  override endpointStates(): EndpointState[] {
    return this.#slots.map((s) => ({ endpoint: `rank-${s.rank}`, state: s.status, restarts: this.#ranks.restartsOf(s.rank) }));
  }

  /** Calls `listener` for each {@link WorkerEvent}; `dispose()` unsubscribes. A throwing listener is reported, not rethrown. */
  onWorkerEvent(listener: (e: WorkerEvent) => void): { dispose(): void } {
    return this.#ranks.onEvent(listener);
  }

  protected async initExecutor(): Promise<void> {
    checkWorkersFit(this.config.model, this.config.numGpus, undefined, this.config.tinyVae);
    // The one line that says why a big model got the worker count it did when the config left it out.
    if (this.config.numGpusReason) process.stderr.write(`omni-diffusion: ${this.config.numGpusReason}\n`);
    this.#slots = this.#ranks.slots;
    await this.#ranks.start();
  }

  override async collectiveRpc(method: string, opts: CollectiveRpcOptions = {}): Promise<unknown> {
    this.#assertStarted();
    if (typeof method !== "string" || !method) throw new ValidationError("collectiveRpc needs a method name", { field: "method" });
    const unique = opts.uniqueReplyRank;
    if (unique !== undefined && (!Number.isInteger(unique) || unique < 0 || unique >= this.#slots.length)) {
      throw new ValidationError(`uniqueReplyRank must be an integer in [0, ${this.#slots.length}), got ${unique}`, { field: "uniqueReplyRank" });
    }
    const ms = opts.timeout ?? this.config.rpcTimeoutMs;
    const waiting = new Set(this.#slots.map((s) => s.rank));
    const timedOut = () => {
      const ranks = [...waiting].sort((a, b) => a - b);
      return new TimeoutError(`collectiveRpc("${method}") timed out after ${ms}ms; no reply from rank(s) ${ranks.join(", ")}`, {
        data: { method, ranks, timeoutMs: ms },
      });
    };
    try {
      // Every rank gets the call and every reply is awaited, so an error on any rank surfaces.
      const allReady = this.#slots.every((s) => s.status === "ready");
      const replies = opts.signal || !allReady ? await this.#collectiveWaiting(method, opts, ms, waiting, timedOut) : await this.#fanOut(method, opts, ms, waiting, timedOut);
      return unique === undefined ? replies : replies[unique];
    } catch (err) {
      if (this.#ranks.closing && err instanceof WorkerDiedError) {
        throw new ClosedError(`MultiprocExecutor was shut down while "${method}" was pending`, { cause: err, data: { ...err.data, method } });
      }
      throw err;
    }
  }

  /** collectiveRpc when a rank is (re)starting or the caller may abort: waits share one {@link Deadline}. */
  async #collectiveWaiting(method: string, opts: CollectiveRpcOptions, ms: number, waiting: Set<number>, timedOut: () => TimeoutError): Promise<unknown[]> {
    const dl = new Deadline(ms, opts.signal, timedOut);
    try {
      return await Promise.all(
        this.#slots.map(async (slot) => {
          const proc = await slot.whenReady(dl.signal);
          const reply = await proc.call(method, opts.args ?? [], opts.kwargs ?? {}, { deadline: dl.at, signal: dl.signal });
          waiting.delete(slot.rank);
          return reply;
        }),
      );
    } finally {
      dl.dispose();
    }
  }

  /**
   * The RPC hot path (every rank ready, no caller signal): one {@link Deadline} whose signal is never read
   * (so no AbortController, listeners or per-rank async frames); the first failure or its expiry settles it.
   */
  #fanOut(method: string, opts: CollectiveRpcOptions, ms: number, waiting: Set<number>, timedOut: () => TimeoutError): Promise<unknown[]> {
    return new Promise<unknown[]>((resolve, reject) => {
      const calls = this.#slots.map((slot) => ({ slot, proc: slot.proc!, id: 0 }));
      const replies = new Array<unknown>(calls.length);
      let left = calls.length;
      let settled = false;
      const finish = (err: unknown, value?: unknown[]) => {
        if (settled) return;
        settled = true;
        dl.dispose();
        if (err === undefined) return resolve(value!);
        for (const c of calls) if (waiting.has(c.slot.rank)) c.proc.drop(c.id);
        reject(err);
      };
      const dl = new Deadline(ms, undefined, timedOut, finish);
      calls.forEach((c, i) => {
        const started = c.proc.start(method, opts.args ?? [], opts.kwargs ?? {}, { deadline: dl.at });
        c.id = started.id;
        started.reply.then(
          (v) => {
            replies[i] = v;
            waiting.delete(c.slot.rank);
            if (--left === 0) finish(undefined, replies);
          },
          (e: unknown) => finish(e),
        );
      });
    });
  }

  /** Data-parallel batch: requests go to the least-loaded ranks, outputs are merged. Per-request failures land in `errors`. */
  override async executeModel(requests: OmniDiffusionRequest[], opts: ExecuteOptions = {}): Promise<DiffusionOutput> {
    this.#assertStarted();
    if (!requests.length) return new DiffusionOutput();
    const ms = opts.timeout ?? this.config.rpcTimeoutMs;
    const dl = new Deadline(ms, opts.signal, () => new TimeoutError(`executeModel timed out after ${ms}ms`, { data: { method: "generate", timeoutMs: ms } }));
    const planned = new Map<RankSlot, OmniDiffusionRequest[]>();
    const unplaced: OmniDiffusionRequest[] = [];
    for (const r of requests) {
      const slot = this.#pick(planned);
      if (slot) planned.set(slot, [...(planned.get(slot) ?? []), r]);
      else unplaced.push(r);
    }
    try {
      const parts = await Promise.all([...planned].map(([slot, batch]) => this.#runBatch(slot, batch, dl, opts.onProgress, opts.previewEvery)));
      if (unplaced.length) parts.push(this.#failedBatch(unplaced, this.#noRankError(), 0));
      return DiffusionOutput.merge(parts);
    } finally {
      dl.dispose();
    }
  }

  override async abortRequest(requestId: string): Promise<void> {
    this.#assertStarted();
    const slot = this.#requestRank.get(requestId);
    if (!slot) return;
    this.#pendingAborts.add(requestId);
    if (slot.status === "ready") slot.proc?.abort(requestId);
  }

  /** Pings every rank within the deadline; throws UnhealthyError naming each dead or unresponsive rank. */
  override async checkHealth(opts: { timeout?: number; signal?: AbortSignal } = {}): Promise<void> {
    this.#assertStarted();
    const ms = opts.timeout ?? Math.min(this.config.rpcTimeoutMs, this.#opts.healthTimeoutMs);
    const dl = new Deadline(ms, opts.signal, () => new TimeoutError(`no ping reply within ${ms}ms`, { data: { method: "ping", timeoutMs: ms } }));
    const problems: { rank: number; reason: string }[] = [];
    try {
      await Promise.all(
        this.#slots.map(async (slot) => {
          if (slot.status !== "ready" || !slot.proc) {
            problems.push({ rank: slot.rank, reason: this.#describeDown(slot) });
            return;
          }
          try {
            await slot.proc.call("ping", [], {}, { deadline: dl.at, signal: dl.signal });
          } catch (err) {
            problems.push({ rank: slot.rank, reason: toOmniError(err).message });
          }
        }),
      );
      if (dl.callerAborted) throw dl.signal.reason;
    } finally {
      dl.dispose();
    }
    if (problems.length) {
      problems.sort((a, b) => a.rank - b.rank);
      throw new UnhealthyError(`MultiprocExecutor is unhealthy: ${problems.map((p) => `rank ${p.rank}: ${p.reason}`).join("; ")}`, {
        data: { ranks: problems.map((p) => p.rank), problems },
      });
    }
  }

  protected async shutdown(): Promise<void> {
    await this.#ranks.stop();
  }

  /** Least outstanding work first (ties: lowest rank); ready ranks before (re)starting ones; null when every rank failed. */
  #pick(planned: Map<RankSlot, OmniDiffusionRequest[]> = new Map()): RankSlot | null {
    const ready = this.#slots.filter((s) => s.status === "ready");
    const pool = ready.length ? ready : this.#slots.filter((s) => s.status === "starting" || s.status === "restarting");
    const load = (s: RankSlot) => s.load + (planned.get(s) ?? []).reduce((a, r) => a + this.#cost(r), 0);
    return pool.reduce<RankSlot | null>((best, s) => (best === null || load(s) < load(best) ? s : best), null);
  }

  #cost(r: OmniDiffusionRequest): number {
    return r.numOutputsPerPrompt * (r.numInferenceSteps ?? this.#ranks.defaultSteps);
  }

  /**
   * Runs one rank's share under {@link workerRetryPolicy}: a WorkerDiedError is retried at once on the
   * least-loaded live rank (up to `maxWorkerRetries`); anything else becomes per-request errors. A caller's
   * abort is rethrown.
   */
  async #runBatch(
    first: RankSlot,
    batch: OmniDiffusionRequest[],
    dl: Deadline,
    onProgress?: (p: StepProgress) => void,
    previewEvery?: Readonly<Record<string, number>>,
  ): Promise<DiffusionOutput> {
    // Only this rank's share of the preview map travels with the call.
    const previews = Object.fromEntries(batch.flatMap((r) => (previewEvery && Object.hasOwn(previewEvery, r.requestId) ? [[r.requestId, previewEvery[r.requestId]!]] : [])));
    const kwargs: GenerateTransferKwargs = Object.keys(previews).length ? { transfer: true, previewEvery: previews } : { transfer: true };
    /** Attempts that reached a rank (the error message reports them). */
    let attempts = 0;
    let noRank = false;
    const policy = workerRetryPolicy(this.config.maxWorkerRetries, (e) => e instanceof WorkerDiedError && !noRank && !dl.signal.aborted && !this.#ranks.closing);
    try {
      return await policy.execute(async ({ attempt }) => {
        const slot = attempt === 0 ? first : this.#pick();
        if (!slot) {
          noRank = true;
          throw this.#noRankError();
        }
        attempts = attempt + 1;
        return await this.#attempt(slot, batch, kwargs, dl, onProgress);
      });
    } catch (err) {
      if (dl.callerAborted) throw err;
      return this.#failedBatch(batch, toOmniError(err), attempts);
    } finally {
      for (const r of batch) this.#pendingAborts.delete(r.requestId);
    }
  }

  /** One try of a batch on one rank; the rank's load is charged for it and paid off step by step. */
  async #attempt(
    slot: RankSlot,
    batch: OmniDiffusionRequest[],
    kwargs: GenerateTransferKwargs,
    dl: Deadline,
    onProgress?: (p: StepProgress) => void,
  ): Promise<DiffusionOutput> {
    const images = new Map(batch.map((r) => [r.requestId, r.numOutputsPerPrompt]));
    let charged = batch.reduce((a, r) => a + this.#cost(r), 0);
    slot.load += charged;
    // Each step reported pays off its images' share of the load, so routing sees the work still to run.
    const progress = (p: StepProgress) => {
      const paid = Math.min(charged, images.get(p.requestId) ?? 0);
      slot.load -= paid;
      charged -= paid;
      onProgress?.(p);
    };
    for (const r of batch) this.#requestRank.set(r.requestId, slot);
    try {
      const proc = await slot.whenReady(dl.signal);
      // Validated once, when built: they cross as they are (images raw), and the worker does not parse them again.
      const transfers = batch.map((r) => r.toTransfer());
      // Steps are reported only when someone uses them: the caller, or routing across ranks (one rank has no choice to make).
      const wanted = onProgress || this.#slots.length > 1;
      const reply = proc.call("generate", [transfers], { ...kwargs }, { deadline: dl.at, onProgress: wanted ? progress : undefined, signal: dl.signal });
      // IPC keeps order, so an abort sent after the call reaches the worker while the request is in flight.
      for (const r of batch) if (this.#pendingAborts.has(r.requestId)) proc.abort(r.requestId);
      return DiffusionOutput.fromTransfer(await reply);
    } catch (err) {
      if (dl.callerAborted) {
        for (const r of batch) slot.proc?.abort(r.requestId);
        throw err;
      }
      if (this.#ranks.closing) throw new ClosedError("MultiprocExecutor was shut down while the request was running", { cause: err, data: { rank: slot.rank } });
      throw toOmniError(err);
    } finally {
      slot.load -= charged;
      for (const r of batch) if (this.#requestRank.get(r.requestId) === slot) this.#requestRank.delete(r.requestId);
    }
  }

  #failedBatch(batch: OmniDiffusionRequest[], e: OmniError, attempts: number): DiffusionOutput {
    const err =
      e instanceof WorkerDiedError && attempts > 0
        ? new WorkerDiedError(`${e.message} (gave up after ${attempts} attempt(s); maxWorkerRetries=${this.config.maxWorkerRetries})`, {
            cause: e,
            data: { ...e.data, attempts },
          })
        : e;
    return new DiffusionOutput({ errors: Object.fromEntries(batch.map((r) => [r.requestId, err])) });
  }

  #noRankError(): OmniError {
    if (this.#ranks.closing) return new ClosedError("MultiprocExecutor is shut down");
    const reasons = this.#slots.map((s) => `rank ${s.rank}: ${s.failure?.message ?? s.status}`).join("; ");
    return new WorkerDiedError(`no worker rank can run requests (${reasons})`, { data: { ranks: this.#slots.map((s) => s.rank) } });
  }

  #describeDown(slot: RankSlot): string {
    if (slot.status === "restarting") return `dead (${describeExit(slot.lastExit)}), restarting`;
    if (slot.status === "failed" || slot.status === "closed") return slot.failure?.message ?? slot.status;
    return `not ready (${slot.status})`;
  }

}
