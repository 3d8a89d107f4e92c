import { modelLimitsSchema, type ModelLimits } from "../core/model-limits.js";
import { UnknownMethodError, toOmniError } from "../errors/omni-error.js";
import type { DiffusionExecutor } from "../executors/base.js";

/** Longest wait for the `describeModel` reply at start-up, ms (a remote peer that never answers must not stall create()). */
const DESCRIBE_TIMEOUT_MS = 30_000;

/**
 * Why a `describeModel` reply is not a ModelLimits, in one short line: the first bad field and how many
 * other problems there are. The full zod report (every field of a generic reply) helps nobody at start-up.
 */
function checkLimits(reply: unknown): { limits: ModelLimits } | { problem: string } {
  if (Array.isArray(reply)) return { problem: "an array: with uniqueReplyRank 0, return rank 0's reply alone" };
  const r = modelLimitsSchema.safeParse(reply);
  if (r.success) return { limits: r.data };
  const [first, ...rest] = r.error.issues;
  const field = first!.path.map(String).join(".") || "(the reply)";
  const more = rest.length ? `, and ${rest.length} more problem${rest.length === 1 ? "" : "s"}` : "";
  return { problem: `${field}: ${first!.message}${more}` };
}

/**
 * Asks rank 0 what its model can serve (the worker's `describeModel` RPC), once, after the executor started.
 * Executors that do not implement it (UnknownMethodError, or a reply of undefined/null: a custom executor
 * written before the method was documented) give null silently: then only the config's limits apply (a
 * remote peer's own engine still checks its model's; a local pipeline's model rules are checked only here,
 * once, so a local executor should answer describeModel, as the built-in ones do). A malformed reply or another failure warns in one
 * line and gives null.
 */
export async function fetchModelLimits(executor: DiffusionExecutor, rpcTimeoutMs: number): Promise<ModelLimits | null> {
  const who = executor.constructor.name || "the executor";
  let reply: unknown;
  try {
    reply = await executor.collectiveRpc("describeModel", { uniqueReplyRank: 0, timeout: Math.min(rpcTimeoutMs, DESCRIBE_TIMEOUT_MS) });
  } catch (err) {
    const e = toOmniError(err);
    if (!(e instanceof UnknownMethodError) && e.code !== "OMNI_ERR_UNKNOWN_METHOD") {
      process.emitWarning(`omni-diffusion: ${who} did not describe its model (${firstLine(e.message)}); only the config's limits apply`);
    }
    return null;
  }
  if (reply === undefined || reply === null) return null;
  const checked = checkLimits(reply);
  if ("problem" in checked) {
    process.emitWarning(`omni-diffusion: ${who}'s describeModel reply was ignored (${checked.problem}); only the config's limits apply`);
    return null;
  }
  return checked.limits;
}

/** The first line of a message, at most 200 characters: a warning printed on every start stays one line. */
function firstLine(message: string): string {
  const line = message.split("\n", 1)[0]!;
  return line.length > 200 ? `${line.slice(0, 197)}...` : line;
}

/**
 * What each model of the executor can serve, for the engine's one limits check: the default model's from start-up
 * ({@link fetchModelLimits}), the others' (issue 24) learnt from the workers once they have loaded them (the
 * `describeModels` RPC: each rank's loaded models by name). A model not learnt yet is checked by the worker that
 * loads it, with the same rules and words. An executor without the method (older peers, custom executors) leaves
 * the others unknown, silently.
 */
export class ModelLimitsBook {
  readonly #executor: DiffusionExecutor;
  readonly #timeoutMs: number;
  readonly #defaultModel: string;
  readonly #defaultLimits: ModelLimits | null;
  readonly #known = new Map<string, ModelLimits>();
  #asking: Promise<void> | null = null;
  #askAgain = false;

  constructor(executor: DiffusionExecutor, rpcTimeoutMs: number, defaultModel: string, defaultLimits: ModelLimits | null) {
    this.#executor = executor;
    this.#timeoutMs = Math.min(rpcTimeoutMs, DESCRIBE_TIMEOUT_MS);
    this.#defaultModel = defaultModel;
    this.#defaultLimits = defaultLimits;
  }

  /** The limits of `model` (null: the default one); null while unknown. */
  get(model: string | null): ModelLimits | null {
    return this.#isDefault(model) ? this.#defaultLimits : (this.#known.get(model!) ?? null);
  }

  /** Told of each batch's models once it ran: a model not described yet has been loaded by now, so ask. */
  seeBatch(models: readonly (string | null)[]): void {
    if (models.some((m) => !this.#isDefault(m) && !this.#known.has(m!))) this.refresh();
  }

  #isDefault(model: string | null): boolean {
    return model === null || model === this.#defaultModel;
  }

  /** Asks the workers in the background, one question at a time (a call meanwhile asks once more after it). */
  refresh(): void {
    if (this.#asking) {
      this.#askAgain = true;
      return;
    }
    this.#asking = (async () => {
      try {
        for (const [name, limits] of describedModels(await this.#executor.collectiveRpc("describeModels", { timeout: this.#timeoutMs }))) this.#known.set(name, limits);
      } catch {
        // Not implemented, closing, or a worker busy past the deadline: the workers keep checking these requests.
      } finally {
        this.#asking = null;
        if (this.#askAgain) {
          this.#askAgain = false;
          this.refresh();
        }
      }
    })();
  }

  /** Told of every RPC the engine passes on: after `setModels` a name may stand for another folder, so all are forgotten. */
  seeRpc(method: string): void {
    if (method === "setModels") this.#known.clear();
  }
}

/** The valid `{ name: ModelLimits }` entries of a collective reply (ranks' replies, nested by remote peers). */
function describedModels(reply: unknown, out = new Map<string, ModelLimits>()): Map<string, ModelLimits> {
  if (Array.isArray(reply)) {
    for (const r of reply) describedModels(r, out);
  } else if (reply && typeof reply === "object") {
    for (const [name, value] of Object.entries(reply)) {
      const r = modelLimitsSchema.safeParse(value);
      if (r.success) out.set(name, r.data);
    }
  }
  return out;
}
