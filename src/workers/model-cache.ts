import type { PipelineLoadOptions } from "../core/pipeline-load-options.js";
import { estimateWorkerBytes, RUNTIME_BYTES } from "../core/memory-estimate.js";
import type { ModelLimits } from "../core/model-limits.js";
import { weightsKey, type LoraRef, type LoraSpec } from "../core/weights.js";
import { onnxFilesUnder, onnxWeightBytes, PEAK_PER_WEIGHT_BYTE } from "../core/worker-count.js";
import { AbortedError, NotFoundError, OmniError, ResourceExhaustedError } from "../errors/omni-error.js";
import type { DiffusionPipeline } from "../pipelines/types.js";

/** Loads one pipeline (pipelines/load.ts `loadPipeline` by default; tests inject a gated one). */
export type PipelineLoader = (modelDir: string, opts: PipelineLoadOptions) => Promise<DiffusionPipeline>;

/** A LoRA name → its file. The LoRA catalog of `--loras-dir` provides the real one. */
export type LoraResolver = (name: string) => string;

/** The resolver of a worker started without `--loras-dir`: every LoRA is unknown. */
export const noLoras: LoraResolver = (name) => {
  throw new NotFoundError(`no LoRA named "${name}" (start with --loras-dir)`, { data: { field: "loras", lora: name } });
};

/** One loaded (or loading) pipeline of the cache: a model with one LoRA set. */
export interface CacheEntry<T> {
  readonly key: string;
  readonly model: string;
  readonly loras: readonly LoraRef[];
  pipeline: DiffusionPipeline | null;
  /** What the cache built around the pipeline (the worker's per-key step loop). */
  slot: T | null;
  /** Its estimated resident bytes (before the load: from its weights; after: from the model's own memory figures). */
  bytes: number;
  /** Calls running on it; eviction waits for 0. */
  users: number;
  lastUsed: number;
  /** Settles when the load ends. */
  ready: Promise<void>;
  loaded: boolean;
  evicting: boolean;
  /** Wakes an eviction waiting for the last user. */
  drained: (() => void) | null;
  /** Why its load failed (the entry left the cache; the next request loads again). */
  error?: Error;
}

/** A hold on a loaded entry; give it back with {@link ModelCache.release}. */
export interface Lease<T> {
  readonly entry: CacheEntry<T>;
  readonly pipeline: DiffusionPipeline;
  readonly slot: T;
}

/** How to build a {@link ModelCache}. */
export interface ModelCacheOptions<T> {
  /** Every model it may load: name → folder. */
  models: Readonly<Record<string, string>>;
  defaultModel: string;
  load: PipelineLoadOptions;
  /** Loads an entry's pipeline; `model` is the entry's model name (two names may share a folder). */
  loader: (modelDir: string, opts: PipelineLoadOptions, model: string) => Promise<DiffusionPipeline>;
  resolveLora?: LoraResolver;
  /** Most entries loaded at once; default unbounded. */
  maxLoaded?: number;
  /** Budget of the entries' estimated bytes together; 0 or absent: unchecked. */
  maxBytes?: number;
  /** Builds what lives beside a loaded pipeline (the worker's intake). */
  makeSlot: (pipeline: DiffusionPipeline, entry: CacheEntry<T>) => T;
  /** Drops an entry's pipeline after its users left (the worker runs the release on its lane, between steps). */
  dispose: (entry: CacheEntry<T>) => Promise<void>;
  /** A pipeline that is already loaded (the worker's start-up model), entered under its name. */
  preloaded?: { model: string; pipeline: DiffusionPipeline };
}

/** Counters of a {@link ModelCache} (the worker's getStats reports them). */
export interface ModelCacheStats {
  loads: number;
  evictions: number;
  maxLoaded: number | null;
  budgetBytes: number;
  usedBytes: number;
  loaded: { key: string; model: string; loras: LoraRef[]; bytes: number; users: number; loading: boolean }[];
}

/**
 * A worker's pipelines by weights key (model, LoRA set): loaded on first use, kept in an LRU bounded by a count
 * and a memory budget. A hit is synchronous, so a load never blocks requests for a loaded model; a request for a
 * loading key waits for that load (within its signal); evicting an entry waits for the calls running on it.
 * Room is made one admission at a time, so two loads never count the same free bytes.
 */
export class ModelCache<T> {
  readonly #o: ModelCacheOptions<T>;
  readonly #entries = new Map<string, CacheEntry<T>>();
  #models: Readonly<Record<string, string>>;
  #admission: Promise<unknown> = Promise.resolve();
  #clock = 0;
  #loads = 0;
  #evictions = 0;

  constructor(opts: ModelCacheOptions<T>) {
    this.#o = opts;
    this.#models = { ...opts.models };
    if (opts.preloaded) {
      const e = this.#newEntry(opts.preloaded.model, []);
      this.#install(e, opts.preloaded.pipeline);
      this.#loads++;
      this.#entries.set(e.key, e);
    }
  }

  /**
   * Replaces the catalog (a rescan of `--models-dir`): the default stays, and every entry of a model that left it
   * is evicted after its calls.
   */
  async setModels(models: Readonly<Record<string, string>>): Promise<void> {
    this.#models = { ...models, [this.#o.defaultModel]: this.#o.models[this.#o.defaultModel]! };
    const gone = [...this.#entries.values()].filter((e) => !Object.hasOwn(this.#models, e.model));
    await Promise.all(gone.map(async (e) => {
      await e.ready.catch(() => undefined);
      if (e.loaded) await this.#evict(e);
    }));
  }

  /** Every model it may load, name → folder. */
  get models(): Readonly<Record<string, string>> {
    return this.#models;
  }

  /** The name a request's `model` means (null: the default); NotFoundError naming it and the known ones. */
  modelName(model: string | null | undefined): string {
    const name = model ?? this.#o.defaultModel;
    if (!Object.hasOwn(this.#models, name)) {
      const known = Object.keys(this.#models);
      throw new NotFoundError(`no model named "${name}" (known: ${known.join(", ")})`, { data: { field: "model", model: name, known } });
    }
    return name;
  }

  /** The key a request runs under (validates the model name). */
  keyOf(model: string | null | undefined, loras: readonly LoraRef[] = []): string {
    return weightsKey(this.modelName(model), loras);
  }

  /** A loaded entry without waiting (no load started); null when the key is not loaded. */
  peek(key: string): CacheEntry<T> | null {
    const e = this.#entries.get(key);
    return e?.loaded && !e.evicting ? e : null;
  }

  /**
   * Holds the entry of (model, loras), loading it first when needed. The caller must {@link release} the lease.
   * `signal` bounds the wait for a load (a TimeoutError or AbortedError, as the signal's reason says).
   */
  async acquire(model: string | null | undefined, loras: readonly LoraRef[] = [], signal?: AbortSignal): Promise<Lease<T>> {
    const name = this.modelName(model);
    const key = weightsKey(name, loras);
    for (;;) {
      let e = this.#entries.get(key);
      if (!e || e.evicting) {
        e = this.#newEntry(name, loras);
        this.#entries.set(key, e);
        this.#startLoad(e);
      }
      e.users++;
      e.lastUsed = ++this.#clock;
      try {
        if (!e.loaded) await waitFor(e.ready, signal);
      } catch (err) {
        this.release(e);
        throw err;
      }
      // A load that failed removed its entry (the next request tries again); the error is the load's own.
      if (e.loaded && e.pipeline && e.slot !== null) return { entry: e, pipeline: e.pipeline, slot: e.slot };
      this.release(e);
      if (e.error) throw e.error;
    }
  }

  /** Gives a lease back: the entry's calls ended. */
  release(e: CacheEntry<T> | Lease<T>): void {
    const entry = "entry" in e ? e.entry : e;
    entry.users = Math.max(0, entry.users - 1);
    if (entry.users === 0 && entry.drained) {
      const wake = entry.drained;
      entry.drained = null;
      wake();
    }
  }

  /** What each loaded model can serve (its pipeline's `describe`, from its entry without LoRAs), by name. */
  describeLoaded(): Record<string, ModelLimits> {
    const out: Record<string, ModelLimits> = {};
    for (const e of this.#entries.values()) if (e.loaded && !e.loras.length && e.pipeline?.describe) out[e.model] = e.pipeline.describe();
    return out;
  }

  /** Every entry now in the cache (loaded or loading). */
  get entries(): CacheEntry<T>[] {
    return [...this.#entries.values()];
  }

  get stats(): ModelCacheStats {
    const entries = [...this.#entries.values()];
    return {
      loads: this.#loads,
      evictions: this.#evictions,
      maxLoaded: this.#o.maxLoaded ?? null,
      budgetBytes: this.#o.maxBytes ?? 0,
      usedBytes: entries.reduce((s, e) => s + e.bytes, 0),
      loaded: entries.map((e) => ({ key: e.key, model: e.model, loras: e.loras.map((l) => ({ ...l })), bytes: e.bytes, users: e.users, loading: !e.loaded })),
    };
  }

  /** Evicts every entry of `model` (all its LoRA sets) after their calls; false when none was loaded. */
  async unload(model: string): Promise<boolean> {
    const name = this.modelName(model);
    const victims = [...this.#entries.values()].filter((e) => e.model === name && !e.evicting);
    await Promise.all(victims.map(async (e) => {
      await e.ready.catch(() => undefined);
      if (e.loaded) await this.#evict(e);
    }));
    return victims.length > 0;
  }

  /** Loads `model` (no LoRA) now; resolves when it is ready. */
  async preload(model: string, signal?: AbortSignal): Promise<void> {
    this.release(await this.acquire(model, [], signal));
  }

  /** Evicts everything (close): waits for every call first. */
  async clear(): Promise<void> {
    await Promise.all([...this.#entries.values()].map(async (e) => {
      await e.ready.catch(() => undefined);
      if (e.loaded) await this.#evict(e);
    }));
  }

  #newEntry(model: string, loras: readonly LoraRef[]): CacheEntry<T> {
    return {
      key: weightsKey(model, loras),
      model,
      loras: loras.map((l) => ({ name: l.name, scale: l.scale })),
      pipeline: null,
      slot: null,
      bytes: estimateFromWeights(this.#models[model]!),
      users: 0,
      lastUsed: ++this.#clock,
      ready: Promise.resolve(),
      loaded: false,
      evicting: false,
      drained: null,
    };
  }

  #install(e: CacheEntry<T>, pipeline: DiffusionPipeline): void {
    e.pipeline = pipeline;
    e.bytes = estimateLoaded(pipeline) ?? e.bytes;
    e.slot = this.#o.makeSlot(pipeline, e);
    e.loaded = true;
  }

  #startLoad(e: CacheEntry<T>): void {
    e.ready = (async () => {
      try {
        // LoRA names resolve to files before any room is made: an unknown one costs nothing.
        const loras: LoraSpec[] = e.loras.map((l) => ({ ...l, path: (this.#o.resolveLora ?? noLoras)(l.name) }));
        await this.#makeRoom(e);
        const pipeline = await this.#o.loader(this.#models[e.model]!, { ...this.#o.load, ...(loras.length ? { loras } : {}) }, e.model);
        this.#loads++;
        this.#install(e, pipeline);
        // The measured estimate may exceed the pre-load one: make room again (evicting idle entries only).
        await this.#makeRoom(e);
      } catch (err) {
        e.error = err as Error;
        if (this.#entries.get(e.key) === e) this.#entries.delete(e.key);
        if (e.pipeline) await e.pipeline.release().catch(() => undefined);
        e.pipeline = null;
        e.loaded = false;
      }
    })();
  }

  /** Evicts least recently used entries until `e` fits the count and the budget; one admission at a time. */
  #makeRoom(e: CacheEntry<T>): Promise<void> {
    const run = this.#admission.then(() => this.#makeRoomNow(e));
    this.#admission = run.catch(() => undefined);
    return run;
  }

  async #makeRoomNow(e: CacheEntry<T>): Promise<void> {
    const budget = this.#o.maxBytes ?? 0;
    if (budget > 0 && e.bytes > budget) {
      throw new ResourceExhaustedError(
        `model "${e.key}" needs about ${mib(e.bytes)} MiB resident but the model memory budget is ${mib(budget)} MiB (--max-model-memory)`,
        { data: { field: "model", model: e.model, key: e.key, neededBytes: e.bytes, budgetBytes: budget } },
      );
    }
    for (;;) {
      const others = [...this.#entries.values()].filter((x) => x !== e && !x.evicting);
      const used = others.reduce((s, x) => s + x.bytes, 0);
      const countOk = this.#o.maxLoaded === undefined || others.length + 1 <= this.#o.maxLoaded;
      const bytesOk = budget <= 0 || used + e.bytes <= budget;
      if (countOk && bytesOk) return;
      // Loaded entries only (a loading one cannot be dropped yet), the least recently used first; idle ones before busy.
      const victims = others.filter((x) => x.loaded).sort((a, b) => (a.users === 0) === (b.users === 0) ? a.lastUsed - b.lastUsed : a.users === 0 ? -1 : 1);
      const victim = victims[0];
      if (!victim) {
        throw new ResourceExhaustedError(
          `model "${e.key}" (about ${mib(e.bytes)} MiB) does not fit: ${others.length} other model(s) are loading and take ${mib(used)} MiB of the ${budget > 0 ? `${mib(budget)} MiB budget` : "budget"}${this.#o.maxLoaded !== undefined ? ` (at most ${this.#o.maxLoaded} loaded)` : ""}`,
          { data: { field: "model", model: e.model, key: e.key, neededBytes: e.bytes, usedBytes: used, budgetBytes: budget, maxLoaded: this.#o.maxLoaded ?? null } },
        );
      }
      await this.#evict(victim);
    }
  }

  /** Takes the entry out of the cache at once (new requests for its key load it again), then drops it after its calls. */
  async #evict(e: CacheEntry<T>): Promise<void> {
    if (e.evicting) return;
    e.evicting = true;
    if (this.#entries.get(e.key) === e) this.#entries.delete(e.key);
    if (e.users > 0) await new Promise<void>((r) => (e.drained = r));
    this.#evictions++;
    await this.#o.dispose(e);
    e.pipeline = null;
    e.slot = null;
    e.loaded = false;
  }
}

/** Resident bytes of a model not loaded yet: its weights times the measured peak per weight byte (worker-count.ts). */
export function estimateFromWeights(dir: string): number {
  return Math.round(onnxWeightBytes(onnxFilesUnder(dir)) * PEAK_PER_WEIGHT_BYTE);
}

/** Resident bytes of a loaded model, from its own memory figures (core/memory-estimate.ts) at its native size; null without them. */
function estimateLoaded(p: DiffusionPipeline): number | null {
  const limits = p.describe?.();
  if (!limits?.memory) return null;
  // One guided image at the native size, less the runtime every model of the worker shares.
  return Math.round(estimateWorkerBytes({ ...limits, memory: limits.memory }, limits.nativeWidth, limits.nativeHeight, 2, 1).total - RUNTIME_BYTES);
}

const mib = (b: number) => (b / 1024 ** 2).toFixed(1);

/** `p`, or the signal's reason when it aborts first. */
function waitFor(p: Promise<void>, signal: AbortSignal | undefined): Promise<void> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(reasonOf(signal));
  return new Promise<void>((resolve, reject) => {
    const onAbort = () => reject(reasonOf(signal));
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

function reasonOf(signal: AbortSignal): Error {
  const r: unknown = signal.reason;
  // A Deadline's TimeoutError (or another typed reason) as it is; a plain abort() is the caller's AbortedError.
  return r instanceof OmniError ? r : new AbortedError("aborted while its model was loading", { cause: r });
}
