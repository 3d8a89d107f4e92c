import type { WorkerInit } from "../protocol/worker-ipc.js";
import { DiffusionOutput } from "../core/output.js";
import { OmniDiffusionRequest, type OmniDiffusionRequestTransfer } from "../core/request.js";
import { ClosedError, ConfigError, TimeoutError, UnknownMethodError, ValidationError, toOmniError, type OmniError } from "../errors/omni-error.js";
import type { ModelLimits } from "../core/model-limits.js";
import { loraResolver } from "../pipelines/lora/lora-catalog.js";
import { loadPipeline } from "../pipelines/load.js";
import type { CallBudgetStats } from "../pipelines/call-planner.js";
import type { StepLoopStats } from "../pipelines/step-loop.js";
import { UnetProfile } from "../pipelines/unet-profile.js";
import type { DiffusionPipeline, PipelineInfo, StepProgress } from "../pipelines/types.js";
import { importSpec } from "../utils/import-spec.js";
import type { WorkerStats } from "../protocol/worker-stats.js";
import { ExclusiveLane } from "./exclusive-lane.js";
import { GenerateIntake } from "./generate-intake.js";
import { ModelCache, type LoraResolver, type ModelCacheStats, type PipelineLoader } from "./model-cache.js";
import type { DiffusionWorkerOptions } from "./diffusion-worker-options.js";

export type { DiffusionWorkerOptions };
import { routeByWeights } from "./weights-router.js";
import { modelDisplayName } from "../core/model-path.js";

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
 * `getStats`, `describeModel`, `sleep`, `wakeUp`, `abort`, plus the methods of an optional worker extension).
 * This module is the RPC table and the extension loading; a generate goes to the worker's
 * {@link GenerateIntake} (typed requests, the one step loop, the deadline), and pipeline work that must not
 * overlap runs on its {@link ExclusiveLane}.
 *
 * Transport-agnostic: the multi-process executor drives it from a child process over IPC, the uniproc
 * executor in-process. A steppable pipeline is denoised by one {@link StepLoop} whose admission rule is the
 * batching policy (`continuous`: concurrent `generate` calls share UNet calls); a pipeline without the
 * step-level interface goes through the same loop one whole `generate` call at a time. `sleep`, `wakeUp` and
 * `close` run alone (between steps of the loop); `ping`, `getStats` and `abort` are answered between denoising steps.
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
  readonly #lane = new ExclusiveLane();
  readonly #intake: GenerateIntake;
  /** Every model this worker may serve, loaded on first use (issue 24); the start-up pipeline is its first entry. */
  readonly #cache: ModelCache<GenerateIntake>;
  readonly #defaultModel: string;
  /** Requests done by intakes of evicted entries (getStats counts every request this worker ran). */
  #doneEvicted = 0;
  #closed = false;

  /**
   * `maxCallMs` is the step loop's compute budget per UNet call (default `"auto"`, see docs/batching.md);
   * `unetProfile` prices the calls (default: learned from the loop's own calls; tests give a fixed one).
   */
  constructor(pipeline: DiffusionPipeline, opts: DiffusionWorkerOptions) {
    this.pipeline = pipeline;
    this.rank = opts.rank;
    this.#defaultModel = opts.defaultModel ?? opts.modelName ?? "default";
    // One learned UNet profile per model, shared by its LoRA variants and its reloads: a key's new loop prices its
    // calls from what the model's earlier loops measured instead of learning from scratch.
    const profiles = new Map<string, UnetProfile>([[this.#defaultModel, opts.unetProfile ?? new UnetProfile()]]);
    const profileOf = (model: string) => profiles.get(model) ?? profiles.set(model, new UnetProfile()).get(model)!;
    const intakeOpts = { rank: opts.rank, batching: opts.batching, maxBatchRows: opts.maxBatchRows, maxCallMs: opts.maxCallMs, lane: this.#lane };
    this.#intake = new GenerateIntake(pipeline, { ...intakeOpts, unetProfile: profileOf(this.#defaultModel) });
    const models = opts.models ?? { [this.#defaultModel]: opts.modelDir ?? "" };
    const loader = opts.loader ?? loadPipeline;
    this.#cache = new ModelCache<GenerateIntake>({
      models,
      defaultModel: this.#defaultModel,
      load: opts.load ?? {},
      // The start-up pipeline is reloaded in place after an eviction: `worker.pipeline` stays the default model's.
      loader: (dir, lo, model) => (model === this.#defaultModel && !lo.loras?.length ? this.#lane.run(() => pipeline.reload()).then(() => pipeline) : loader(dir, lo)),
      resolveLora: opts.resolveLora,
      maxLoaded: opts.maxLoadedModels,
      maxBytes: opts.maxModelMemory,
      makeSlot: (p, e) => (p === pipeline && e.key === this.#defaultModel ? this.#intake : new GenerateIntake(p, { ...intakeOpts, unetProfile: profileOf(e.model) })),
      dispose: async (e) => {
        if (e.slot) {
          await e.slot.loop.idle();
          if (e.slot !== this.#intake) this.#doneEvicted += e.slot.requestsDone;
        }
        const p = e.pipeline;
        if (p) await this.#lane.run(() => p.release());
      },
      preloaded: { model: this.#defaultModel, pipeline },
    });
    this.#builtins = new Map<string, Builtin>([
      [
        "generate",
        async (args, kw, ctx) => {
          const gen = { ...ctx, previewEvery: ctx.previewEvery ?? parsePreviewEvery(kw.previewEvery) };
          // `transfer: true` (our own parent, over IPC): validated requests and a raw reply, no PNG.
          if (kw.transfer === true) return (await this.#route(transferRequests(args[0]), gen, {})).toTransfer();
          // The documented dict form (docs/custom-executors.md: the default executeModel) answers in dicts, PNG.
          return (await this.generateOutput(args[0], gen)).toDict();
        },
      ],
      ["ping", () => this.ping()],
      ["getStats", () => this.getStats()],
      ["describeModel", () => this.describeModel()],
      ["describeModels", () => this.#cache.describeLoaded()],
      ["sleep", (args, kw) => this.sleep(args[0] ?? kw.level)],
      ["wakeUp", (args, kw) => this.wakeUp(args[0] ?? kw.tags)],
      ["abort", (args, kw) => this.abort(args[0] ?? kw.requestId)],
      ["loadModel", (args, kw) => this.loadModel(args[0] ?? kw.model).then(() => ({ rank: this.rank, models: this.models }))],
      ["setModels", (args, kw) => this.setModels(args[0] ?? kw.models).then(() => ({ rank: this.rank, models: Object.keys(this.#cache.models) }))],
      ["unloadModel", (args, kw) => this.unloadModel(args[0] ?? kw.model).then((unloaded) => ({ rank: this.rank, unloaded, models: this.models }))],
    ]);
  }

  /** Loads the pipeline, then the extension; a failing extension releases the loaded pipeline. */
  static async create(init: DiffusionWorkerInit, hooks: { loader?: PipelineLoader; resolveLora?: LoraResolver } = {}): Promise<DiffusionWorker> {
    const pipeline = await (hooks.loader ?? loadPipeline)(init.modelDir, init.load);
    const worker = new DiffusionWorker(pipeline, {
      rank: init.rank,
      batching: init.batching,
      maxBatchRows: init.maxBatchRows,
      maxCallMs: init.maxCallMs,
      modelDir: init.modelDir,
      modelName: init.defaultModel ?? modelDisplayName(init.modelDir),
      models: init.models,
      defaultModel: init.defaultModel,
      load: init.load,
      maxLoadedModels: init.maxLoadedModels,
      maxModelMemory: init.maxModelMemory,
      // Request LoRAs resolve against --loras-dir's catalog (rescanned once for a name it does not know).
      ...(init.lorasDir ? { resolveLora: loraResolver(init.lorasDir) } : {}),
      ...hooks,
    });
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
   * Runs requests in the step loop, admitted by its batching policy: {@link OmniDiffusionRequest}s as they
   * are, or request dicts (the wire form), each validated here (resolving the model's defaults once). A dict
   * that fails validation gets a ValidationError in `errors` (keyed by its `request_id`, or `#<index>` without
   * one); the others still run.
   */
  async generateOutput(requestDicts: unknown, ctx: WorkerCallContext = {}): Promise<DiffusionOutput> {
    if (!Array.isArray(requestDicts)) {
      throw new ValidationError(`generate expects an array of request dicts, got ${typeof requestDicts}`, { field: "requests" });
    }
    const errors: Record<string, OmniError> = {};
    const requests: OmniDiffusionRequest[] = [];
    requestDicts.forEach((dict, i) => {
      if (dict instanceof OmniDiffusionRequest) return void requests.push(dict);
      try {
        requests.push(OmniDiffusionRequest.fromDict(dict));
      } catch (err) {
        const rawId = (dict as { request_id?: unknown } | null)?.request_id;
        errors[typeof rawId === "string" && rawId ? rawId : `#${i}`] = toOmniError(err);
      }
    });
    return this.#route(requests, ctx, errors);
  }

  /** Each request to the step loop of its weights key (model, LoRAs), loading that model first when needed. */
  #route(requests: readonly OmniDiffusionRequest[], ctx: WorkerCallContext, errors: Record<string, OmniError>): Promise<DiffusionOutput> {
    return routeByWeights(this.#cache, requests, ctx, errors);
  }

  /** The model cache's counters and entries (loads, evictions, bytes). */
  get models(): ModelCacheStats {
    return this.#cache.stats;
  }

  /** Loads a model now (the admin route's load); resolves when it is ready. */
  loadModel(model: unknown): Promise<void> {
    if (typeof model !== "string" || !model) throw new ValidationError("loadModel expects a model name", { field: "model" });
    return this.#cache.preload(model);
  }

  /** Replaces the models this worker may serve (a rescan); the default model stays. */
  setModels(models: unknown): Promise<void> {
    const ok = typeof models === "object" && models !== null && !Array.isArray(models) && Object.values(models).every((d) => typeof d === "string" && d !== "");
    if (!ok) throw new ValidationError("setModels expects a map of model names to folders", { field: "models" });
    return this.#cache.setModels(models as Record<string, string>);
  }

  /** Unloads every pipeline of a model after its running requests; false when none was loaded. */
  unloadModel(model: unknown): Promise<boolean> {
    if (typeof model !== "string" || !model) throw new ValidationError("unloadModel expects a model name", { field: "model" });
    return this.#cache.unload(model);
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
    const loop = this.#intake.loop;
    const intakes = this.#intakes();
    const sum = (f: (i: GenerateIntake) => number) => intakes.reduce((s, i) => s + f(i), 0);
    return {
      rank: this.rank,
      pid: process.pid,
      model,
      components,
      requestsDone: sum((i) => i.requestsDone) + this.#doneEvicted,
      inFlight: sum((i) => i.inFlight),
      asleep,
      batching: loop.admission,
      active: sum((i) => i.loop.size.active),
      waiting: sum((i) => i.loop.size.pending),
      ...this.#intake.stats,
      models: this.#cache.stats,
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
    await this.#lane.run(() => this.pipeline.release());
    return { rank: this.rank, asleep: this.pipeline.info.asleep, level: lvl };
  }

  /** Reloads what `sleep` dropped. `tags` (vLLM's "weights", ...) are accepted; every session is reloaded. */
  async wakeUp(tags?: unknown): Promise<{ rank: number; asleep: boolean }> {
    if (tags !== undefined && (!Array.isArray(tags) || !tags.every((t) => typeof t === "string"))) {
      throw new ValidationError("wakeUp tags must be an array of strings", { field: "tags" });
    }
    await this.#lane.run(() => this.pipeline.reload());
    return { rank: this.rank, asleep: this.pipeline.info.asleep };
  }

  /** Marks an in-flight request aborted; it stops at its next step. Returns false when it is not running here. */
  abort(requestId: unknown): boolean {
    if (typeof requestId !== "string") throw new ValidationError("abort expects a request id string", { field: "requestId" });
    return this.#intakes().some((i) => i.abort(requestId));
  }

  /** Releases the pipeline once, after the requests already in the step loop finished; later calls throw ClosedError. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all(this.#intakes().map((i) => i.loop.idle()));
    await this.#cache.clear();
    await this.#lane.run(() => this.pipeline.release());
  }

  /** The intakes of every loaded entry, the start-up one first (counted once). */
  #intakes(): GenerateIntake[] {
    const set = new Set<GenerateIntake>([this.#intake]);
    for (const e of this.#cache.entries) if (e.slot) set.add(e.slot);
    return [...set];
  }
}

/** A `transfer: true` generate's first argument as requests (trusted: our own parent validated them). */
function transferRequests(v: unknown): OmniDiffusionRequest[] {
  if (!Array.isArray(v)) throw new ValidationError(`generate expects an array of requests, got ${typeof v}`, { field: "requests" });
  return v.map((t) => OmniDiffusionRequest.fromTransfer(t as OmniDiffusionRequestTransfer));
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
