import { existsSync } from "node:fs";
import { join } from "node:path";
import { describeCatalog, scanModelsDir, type CatalogModel } from "../../core/model-catalog.js";
import type { DiffusionEngine } from "../../engine/engine.js";
import { NotFoundError, toOmniError } from "../../errors/omni-error.js";
import type { WorkerStats } from "../../protocol/worker-stats.js";

/** One model as the listing routes show it. */
export interface ServedModel extends CatalogModel {
  /** The id clients send as `model` / `sd_model_checkpoint` (the served name for the engine's default model). */
  id: string;
  /** The one a request without a model runs now. */
  isDefault: boolean;
  /** Loaded in rank 0's model cache now (null: the executor does not say). */
  loaded: boolean | null;
}

/**
 * The models a server serves (issue 24), as every dialect names them: the engine's catalog (config.models), the
 * served name of its default model, and the default a client may change (A1111's `POST /options`). Each dialect
 * turns a client's model name into the request's `model` here, so an unknown name fails the same way everywhere.
 */
export class ServedModels {
  readonly #engine: DiffusionEngine;
  readonly #servedId: string;
  #catalog: Record<string, string>;
  #default: string;

  constructor(engine: DiffusionEngine, servedId: string) {
    this.#engine = engine;
    this.#servedId = servedId;
    this.#catalog = { ...engine.config.models };
    this.#default = engine.config.defaultModel;
  }

  /** The client id of a catalog name. */
  idOf(name: string): string {
    return name === this.#engine.config.defaultModel ? this.#servedId : name;
  }

  /** Every id a client may send, the default first. */
  get ids(): string[] {
    const names = Object.keys(this.#catalog);
    return [this.#default, ...names.filter((n) => n !== this.#default)].map((n) => this.idOf(n));
  }

  /** The id of the model a request without one runs now. */
  get defaultId(): string {
    return this.idOf(this.#default);
  }

  /** The catalog name a client id means, or null when it names no model. */
  nameOf(id: string): string | null {
    if (id === this.#servedId) return this.#engine.config.defaultModel;
    return Object.hasOwn(this.#catalog, id) ? id : null;
  }

  /**
   * The request's `model` for what a client sent (absent: the current default): null for the engine's own
   * default (its limits apply), else the catalog name. NotFoundError naming the id and the known ones.
   */
  requestModel(id: string | null | undefined): string | null {
    const name = id === null || id === undefined || id === "" ? this.#default : this.nameOf(id);
    if (name === null) throw new NotFoundError(`The model '${id}' does not exist; this server serves: ${this.ids.join(", ")}.`, { data: { field: "model", model: id, known: this.ids } });
    return name === this.#engine.config.defaultModel ? null : name;
  }

  /** Makes `id` the default of requests without a model (A1111's `sd_model_checkpoint` option). */
  setDefault(id: string): void {
    const name = this.nameOf(id);
    if (name === null) throw new NotFoundError(`sd_model_checkpoint: model '${id}' not found; this server serves: ${this.ids.join(", ")}`, { data: { field: "sd_model_checkpoint", model: id } });
    this.#default = name;
  }

  /** Every known model, loaded or not, with its layout and size. */
  async list(timeoutMs = 5_000): Promise<ServedModel[]> {
    const loaded = await this.#loadedNames(timeoutMs);
    return describeCatalog(this.#catalog).map((m) => ({ ...m, id: this.idOf(m.name), isDefault: m.name === this.#default, loaded: loaded ? loaded.has(m.name) : null }));
  }

  /**
   * Scans the config's models and `modelsDir` again (A1111's `refresh-checkpoints`) and hands the new catalog to
   * every worker; a model that left the folder is unloaded there. Returns the ids.
   */
  async refresh(): Promise<string[]> {
    const { models, modelsDir, defaultModel } = this.#engine.config;
    // Models still on disk stay (the default always), then whatever the folder holds now.
    const kept = Object.entries({ ...models, ...this.#catalog }).filter(([n, dir]) => n === defaultModel || existsSync(join(dir, "model_index.json")));
    const next: Record<string, string> = { ...Object.fromEntries(kept), ...(modelsDir ? scanModelsDir(modelsDir) : {}) };
    await this.#engine.collectiveRpc("setModels", { kwargs: { models: next } });
    this.#catalog = next;
    if (!Object.hasOwn(next, this.#default)) this.#default = defaultModel;
    return this.ids;
  }

  /** Loads a model on every worker now (absent: the default); resolves when all have it. */
  async load(id?: string | null): Promise<void> {
    await this.#engine.collectiveRpc("loadModel", { kwargs: { model: this.requestModel(id) ?? this.#engine.config.defaultModel } });
  }

  /** Unloads a model on every worker (absent: the default), after its running requests. */
  async unload(id?: string | null): Promise<void> {
    await this.#engine.collectiveRpc("unloadModel", { kwargs: { model: this.requestModel(id) ?? this.#engine.config.defaultModel } });
  }

  async #loadedNames(timeoutMs: number): Promise<Set<string> | null> {
    try {
      const stats = (await this.#engine.collectiveRpc("getStats", { uniqueReplyRank: 0, timeout: timeoutMs })) as WorkerStats | null;
      return stats?.models ? new Set(stats.models.loaded.filter((e) => !e.loading).map((e) => e.model)) : null;
    } catch (err) {
      void toOmniError(err);
      return null;
    }
  }
}
