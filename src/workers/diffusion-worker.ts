import type { WorkerInit } from "../protocol/worker-ipc.js";
import { DiffusionOutput } from "../core/output.js";
import { OmniDiffusionRequest, type OmniDiffusionRequestTransfer } from "../core/request.js";
import {
  AbortedError,
  ClosedError,
  ConfigError,
  TimeoutError,
  UnknownMethodError,
  ValidationError,
  toOmniError,
  type OmniError,
} from "../errors/omni-error.js";
import type { BatchingPolicy } from "../core/config.js";
import type { ModelLimits } from "../core/model-limits.js";
import { internalFailure, type ResolvedParams } from "../pipelines/denoise-state.js";
import { loadPipeline } from "../pipelines/load.js";
import type { CallBudgetStats, MaxCallMs } from "../pipelines/call-planner.js";
import { StepLoop, type ResolvedRequest, type StepLoopStats } from "../pipelines/step-loop.js";
import type { UnetProfile } from "../pipelines/unet-profile.js";
import { isSteppable, type DiffusionPipeline, type GenerateOptions, type PipelineInfo, type PipelineLoadOptions, type StepProgress } from "../pipelines/types.js";
import { importSpec } from "../utils/import-spec.js";
import type { WorkerStats } from "../protocol/worker-stats.js";

/**
 * How to build a {@link DiffusionWorker} with {@link DiffusionWorker.create}: a worker process's start-up
 * parameters (protocol/worker-ipc.ts) less the heartbeat, which belongs to the process, not the worker.
 * `batching` is the step loop's admission rule (`request` when absent).
 */
export type DiffusionWorkerInit = Omit<WorkerInit, "heartbeatIntervalMs">;

/** Per-call context the transport supplies with an RPC. */
export interface WorkerCallContext {
  /** Absolute `Date.now()` time after which the call is abandoned (a generate stops between steps). */
  deadline?: number;
  /** Step progress of each request of a `generate` call. */
  onProgress?: (p: StepProgress) => void;
  /** Aborts a `generate` call between steps. */
  signal?: AbortSignal;
  /**
   * Request id → decode a preview every N steps for that request, delivered in `onProgress`'s `preview`
   * (the `previewEvery` kwarg of a `generate` RPC). Requests not listed get no previews.
   */
  previewEvery?: Readonly<Record<string, number>>;
}

/** Reply of the `ping` RPC. */
export interface PingReply {
  rank: number;
  pid: number;
  time: number;
}

/** A worker extension class (vLLM's `worker_extension_cls`): constructed with the worker it extends. */
export type WorkerExtensionClass = new (worker: DiffusionWorker) => object;

/** A built-in method: the cheap ones answer synchronously (see {@link DiffusionWorker.dispatch}). */
type Builtin = (args: unknown[], kwargs: Record<string, unknown>, ctx: WorkerCallContext) => unknown;

/**
 * One rank: holds a loaded {@link DiffusionPipeline} and answers RPC calls by name (`generate`, `ping`,
 * `getStats`, `sleep`, `wakeUp`, `abort`, plus the methods of an optional worker extension).
 *
 * Transport-agnostic: the multi-process executor drives it from a child process over IPC, the uniproc
 * executor in-process. A steppable pipeline is denoised by one {@link StepLoop} whose admission rule is the
 * batching policy (`continuous`: concurrent `generate` calls share UNet calls); a pipeline without the
 * step-level interface gets one `generate` call at a time. `sleep`, `wakeUp` and `close` run alone (between
 * steps of the loop); `ping`, `getStats` and `abort` are answered between denoising steps.
 *
 * @example
 * ```ts
 * const worker = await DiffusionWorker.create({ rank: 0, modelDir: "models/tiny-shapes", load: { intraOpNumThreads: 1 } });
 * const reply = await worker.call("ping", [], {});
 * await worker.close();
 * ```
 */
export class DiffusionWorker {
  readonly rank: number;
  readonly pipeline: DiffusionPipeline;
  #builtins: Map<string, Builtin>;
  #extension: object | null = null;
  #extensionMethods = new Map<string, (...a: unknown[]) => unknown>();
  #inFlight = new Set<string>();
  #aborted = new Set<string>();
  #exclusiveTail: Promise<unknown> = Promise.resolve();
  #requestsDone = 0;
  #closed = false;
  #loop: StepLoop | null = null;

  /**
   * `maxCallMs` is the step loop's compute budget per UNet call (default `"auto"`, see docs/batching.md);
   * `unetProfile` prices the calls (default: learned from the loop's own calls; tests give a fixed one).
   */
  constructor(pipeline: DiffusionPipeline, opts: { rank: number; batching?: BatchingPolicy; maxBatchRows?: number; maxCallMs?: MaxCallMs; unetProfile?: UnetProfile }) {
    this.pipeline = pipeline;
    this.rank = opts.rank;
    if (isSteppable(pipeline)) {
      if (opts.maxBatchRows !== undefined) pipeline.maxBatchRows = opts.maxBatchRows;
      this.#loop = new StepLoop(pipeline, {
        maxBatchRows: pipeline.maxBatchRows,
        admission: opts.batching ?? "request",
        exclusive: (fn) => this.#exclusive(fn),
        maxCallMs: opts.maxCallMs,
        unetProfile: opts.unetProfile,
      });
    }
    this.#builtins = new Map<string, Builtin>([
      [
        "generate",
        async (args, kw, ctx) => {
          // `transfer: true` (our own parent, over IPC): validated requests and a raw reply, no PNG.
          const transfer = kw.transfer === true;
          const requests = transfer && Array.isArray(args[0]) ? args[0].map((t) => OmniDiffusionRequest.fromTransfer(t as OmniDiffusionRequestTransfer)) : args[0];
          const out = await this.generateOutput(requests, { ...ctx, previewEvery: ctx.previewEvery ?? parsePreviewEvery(kw.previewEvery) });
          return transfer ? out.toTransfer() : out.toDict();
        },
      ],
      ["ping", () => this.ping()],
      ["getStats", () => this.getStats()],
      ["describeModel", () => this.describeModel()],
      ["sleep", (args, kw) => this.sleep(args[0] ?? kw.level)],
      ["wakeUp", (args, kw) => this.wakeUp(args[0] ?? kw.tags)],
      ["abort", (args, kw) => this.abort(args[0] ?? kw.requestId)],
    ]);
  }

  /** Loads the pipeline, then the extension; a failing extension releases the loaded pipeline. */
  static async create(init: DiffusionWorkerInit): Promise<DiffusionWorker> {
    const pipeline = await loadPipeline(init.modelDir, init.load);
    const worker = new DiffusionWorker(pipeline, { rank: init.rank, batching: init.batching, maxBatchRows: init.maxBatchRows, maxCallMs: init.maxCallMs });
    if (init.workerExtension) {
      try {
        await worker.loadExtension(init.workerExtension);
      } catch (err) {
        await pipeline.release().catch((relErr: unknown) => process.emitWarning(`release after a failed extension load: ${String(relErr)}`));
        throw err;
      }
    }
    return worker;
  }

  /** The extension instance, when one was loaded. */
  get extension(): object | null {
    return this.#extension;
  }

  /** Every RPC method name this worker answers. */
  get methods(): string[] {
    return [...this.#builtins.keys(), ...this.#extensionMethods.keys()];
  }

  /** Imports `"module#Export"`, instantiates it with this worker and exposes its public methods as RPC methods. */
  async loadExtension(spec: string): Promise<void> {
    const found = await importSpec(spec);
    if (!found.ok) throw new ConfigError(`workerExtension "${spec}": ${found.reason}`, { field: "workerExtension" });
    if (typeof found.value !== "function" || !found.value.prototype) {
      throw new ConfigError(`workerExtension "${spec}" must export a class, got ${typeof found.value}`, { field: "workerExtension" });
    }
    const ext = new (found.value as WorkerExtensionClass)(this);
    const methods = new Map<string, (...a: unknown[]) => unknown>();
    for (let proto = Object.getPrototypeOf(ext); proto && proto !== Object.prototype; proto = Object.getPrototypeOf(proto)) {
      for (const name of Object.getOwnPropertyNames(proto)) {
        const fn = Object.getOwnPropertyDescriptor(proto, name)?.value;
        if (name === "constructor" || name.startsWith("_") || typeof fn !== "function" || methods.has(name)) continue;
        methods.set(name, fn as (...a: unknown[]) => unknown);
      }
    }
    const clash = [...methods.keys()].filter((m) => this.#builtins.has(m));
    if (clash.length) {
      throw new ConfigError(`workerExtension "${spec}" redefines built-in worker method(s) ${clash.join(", ")}`, {
        field: "workerExtension",
        data: { methods: clash },
      });
    }
    this.#extension = ext;
    this.#extensionMethods = methods;
  }

  /**
   * Dispatches one RPC. Extension methods get `(...args)`, plus `kwargs` as a last argument when it is
   * not empty. Unknown names throw UnknownMethodError; a call whose deadline already passed throws TimeoutError.
   */
  async call(method: string, args: unknown[] = [], kwargs: Record<string, unknown> = {}, ctx: WorkerCallContext = {}): Promise<unknown> {
    return this.dispatch(method, args, kwargs, ctx);
  }

  /**
   * {@link call} without the promise where the method needs none: `ping`, `getStats`, `describeModel`, `abort`
   * and synchronous extension methods return their value (or throw) at once; the others return a promise.
   * The worker process answers from here, so a liveness ping costs no async hops (bench/rpc.ts).
   */
  dispatch(method: string, args: unknown[] = [], kwargs: Record<string, unknown> = {}, ctx: WorkerCallContext = {}): unknown {
    if (this.#closed) throw new ClosedError(`worker rank ${this.rank} is closed`, { data: { rank: this.rank, method } });
    if (ctx.deadline !== undefined && Date.now() >= ctx.deadline) {
      throw new TimeoutError(`${method} reached worker rank ${this.rank} after its deadline`, { data: { rank: this.rank, method } });
    }
    const builtin = this.#builtins.get(method);
    if (builtin) return builtin(args, kwargs, ctx);
    const ext = this.#extensionMethods.get(method);
    if (ext) return ext.apply(this.#extension, Object.keys(kwargs).length ? [...args, kwargs] : args);
    throw new UnknownMethodError(`worker rank ${this.rank} has no method "${method}" (it has: ${this.methods.join(", ")})`, {
      data: { rank: this.rank, method },
    });
  }

  /**
   * Validates each request dict (resolving the model's defaults once) and runs the valid ones in the step
   * loop, admitted by its batching policy (a pipeline without the step-level interface: one call at a time). A
   * dict that fails validation gets a ValidationError in `errors` (keyed by its `request_id`, or `#<index>`
   * without one); the others still run.
   */
  async generateOutput(requestDicts: unknown, ctx: WorkerCallContext = {}): Promise<DiffusionOutput> {
    if (!Array.isArray(requestDicts)) {
      throw new ValidationError(`generate expects an array of request dicts, got ${typeof requestDicts}`, { field: "requests" });
    }
    const errors: Record<string, OmniError> = {};
    const valid = new Map<string, OmniDiffusionRequest>();
    const resolved = new Map<OmniDiffusionRequest, ResolvedParams>();
    const pipeline = this.pipeline;
    requestDicts.forEach((dict, i) => {
      const rawId = dict instanceof OmniDiffusionRequest ? dict.requestId : (dict as { request_id?: unknown } | null)?.request_id;
      const key = typeof rawId === "string" && rawId ? rawId : `#${i}`;
      try {
        const request = dict instanceof OmniDiffusionRequest ? dict : OmniDiffusionRequest.fromDict(dict);
        if (valid.has(request.requestId) || Object.hasOwn(errors, request.requestId)) {
          valid.delete(request.requestId);
          throw new ValidationError(`request_id "${request.requestId}" appears more than once in one batch`, { field: "request_id" });
        }
        // Calls overlap in the step loop, and aborts and bookkeeping go by id: an id may run once at a time.
        if (this.#inFlight.has(request.requestId)) {
          throw new ValidationError(`request_id "${request.requestId}" is already running on worker rank ${this.rank}`, { field: "request_id" });
        }
        // Resolved once here and carried into the loop (prepare takes the same params).
        if (isSteppable(pipeline)) resolved.set(request, pipeline.resolve(request));
        else pipeline.validate(request);
        valid.set(request.requestId, request);
      } catch (err) {
        errors[key] = toOmniError(err);
      }
    });
    const requests = [...valid.values()];
    if (!requests.length) return new DiffusionOutput({ errors });
    // Registered before queueing, so an abort that arrives while the batch waits its turn is honoured.
    for (const r of requests) this.#inFlight.add(r.requestId);
    try {
      const out = await this.#withDeadline(ctx, (signal) => {
        const opts = { signal, isAborted: (id: string) => this.#aborted.has(id), onProgress: ctx.onProgress, previewEvery: ctx.previewEvery };
        if (this.#loop) return this.#loop.run(requests.map((request): ResolvedRequest => ({ request, params: resolved.get(request)! })), opts);
        return this.#exclusive(() => this.#generateWhole(requests, opts));
      });
      return DiffusionOutput.merge([out, new DiffusionOutput({ errors })]);
    } finally {
      for (const r of requests) {
        this.#inFlight.delete(r.requestId);
        this.#aborted.delete(r.requestId);
      }
      this.#requestsDone += requests.length;
    }
  }

  /**
   * A pipeline without the step-level interface: the call's requests in one `generate`. A throw is the
   * worker's fault (500) for every request, or the call's TimeoutError when its deadline stopped it.
   */
  async #generateWhole(requests: OmniDiffusionRequest[], opts: GenerateOptions & { signal: AbortSignal }): Promise<DiffusionOutput> {
    const timedOut = () => opts.signal.aborted && opts.signal.reason instanceof TimeoutError;
    try {
      const out = await this.pipeline.generate(requests, opts);
      if (timedOut()) {
        // A deadline stop reads as an abort inside the pipeline; callers need to know it was a timeout.
        for (const [id, e] of Object.entries(out.errors)) if (e instanceof AbortedError && !this.#aborted.has(id)) out.errors[id] = opts.signal.reason as OmniError;
      }
      return out;
    } catch (err) {
      const e = timedOut() ? (opts.signal.reason as OmniError) : internalFailure(err, `generate on worker rank ${this.rank} failed`, { rank: this.rank });
      return new DiffusionOutput({ error: e.message, errors: Object.fromEntries(requests.map((r) => [r.requestId, e])) });
    }
  }

  /** Runs `fn` with a signal that aborts at the call's deadline (reason: a TimeoutError) or with the caller's signal. */
  async #withDeadline(ctx: WorkerCallContext, fn: (signal: AbortSignal) => Promise<DiffusionOutput>): Promise<DiffusionOutput> {
    const deadlineCtl = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    if (ctx.deadline !== undefined) {
      const ms = ctx.deadline - Date.now();
      const expire = () => deadlineCtl.abort(new TimeoutError(`generate on worker rank ${this.rank} passed its deadline`, { data: { rank: this.rank, method: "generate" } }));
      if (ms <= 0) expire();
      else timer = setTimeout(expire, ms);
    }
    try {
      return await fn(ctx.signal ? AbortSignal.any([ctx.signal, deadlineCtl.signal]) : deadlineCtl.signal);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Liveness round trip. */
  ping(): PingReply {
    return { rank: this.rank, pid: process.pid, time: Date.now() };
  }

  /**
   * What the loaded model can serve ({@link ModelLimits}): the engine asks rank 0 once at start-up and
   * checks every request against it. UnknownMethodError for a pipeline that cannot describe itself.
   */
  describeModel(): ModelLimits {
    if (!this.pipeline.describe) {
      throw new UnknownMethodError(`the pipeline of worker rank ${this.rank} cannot describe its model`, { data: { rank: this.rank, method: "describeModel" } });
    }
    return this.pipeline.describe();
  }

  /** Model, loaded components and counters of this rank. */
  getStats(): WorkerStats {
    const { components, asleep, ...model } = this.pipeline.info;
    const loop = this.#loop?.size ?? { active: 0, pending: 0 };
    return {
      rank: this.rank,
      pid: process.pid,
      model,
      components,
      requestsDone: this.#requestsDone,
      inFlight: this.#inFlight.size,
      asleep,
      batching: this.#loop?.admission ?? "request",
      active: loop.active,
      waiting: loop.pending,
      loop: this.#loop?.stats ?? null,
      callBudget: this.#loop?.callBudget ?? null,
      cpuMs: cpuMs(),
      rssBytes: process.memoryUsage.rss(),
      // maxRSS is in KiB (getrusage).
      peakRssBytes: process.resourceUsage().maxRSS * 1024,
    };
  }

  /** Drops the ONNX sessions (vLLM's sleep). Every level releases all sessions; a later generate reloads lazily. */
  async sleep(level: unknown = 1): Promise<{ rank: number; asleep: boolean; level: number }> {
    const lvl = level ?? 1;
    if (typeof lvl !== "number" || !Number.isInteger(lvl) || lvl < 1) {
      throw new ValidationError(`sleep level must be an integer >= 1, got ${String(level)}`, { field: "level" });
    }
    await this.#exclusive(() => this.pipeline.release());
    return { rank: this.rank, asleep: this.pipeline.info.asleep, level: lvl };
  }

  /** Reloads what `sleep` dropped. `tags` (vLLM's "weights", ...) are accepted; every session is reloaded. */
  async wakeUp(tags?: unknown): Promise<{ rank: number; asleep: boolean }> {
    if (tags !== undefined && (!Array.isArray(tags) || !tags.every((t) => typeof t === "string"))) {
      throw new ValidationError("wakeUp tags must be an array of strings", { field: "tags" });
    }
    await this.#exclusive(() => this.pipeline.reload());
    return { rank: this.rank, asleep: this.pipeline.info.asleep };
  }

  /** Marks an in-flight request aborted; it stops at its next step. Returns false when it is not running here. */
  abort(requestId: unknown): boolean {
    if (typeof requestId !== "string") throw new ValidationError("abort expects a request id string", { field: "requestId" });
    if (!this.#inFlight.has(requestId)) return false;
    this.#aborted.add(requestId);
    return true;
  }

  /** Releases the pipeline once, after the requests already in the step loop finished; later calls throw ClosedError. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#loop?.idle();
    await this.#exclusive(() => this.pipeline.release());
  }

  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#exclusiveTail.then(fn, fn);
    this.#exclusiveTail = run.catch(() => undefined);
    return run;
  }
}

function cpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

/** Checks the `previewEvery` kwarg of a `generate` RPC: request id → positive integer step interval. */
function parsePreviewEvery(v: unknown): Record<string, number> | undefined {
  if (v === undefined || v === null) return undefined;
  const ok =
    typeof v === "object" &&
    !Array.isArray(v) &&
    Object.values(v as Record<string, unknown>).every((n) => typeof n === "number" && Number.isInteger(n) && n >= 0);
  if (!ok) throw new ValidationError("previewEvery must map request ids to integer step intervals >= 0", { field: "previewEvery" });
  return v as Record<string, number>;
}
