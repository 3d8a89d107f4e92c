import { ExecutorResolutionError, toOmniError } from "../errors/omni-error.js";
import { importSpec } from "../utils/import-spec.js";
import { DiffusionExecutor, type DiffusionExecutorClass } from "./base.js";
import { executorLoader, registeredExecutors } from "./executor-registry.js";
import { ExecutorTypeError } from "./executor-type-error.js";

/** What `executorClass` may be: absent (the multi-process default), a class, a built-in name or `"module#Export"`. */
export type ExecutorSpec = string | DiffusionExecutorClass | undefined;

/**
 * Turns an `executorClass` value into a DiffusionExecutor subclass (vLLM's `DiffusionExecutor.get_class`):
 *
 * - `undefined` → MultiprocExecutor;
 * - a class → itself, if it extends DiffusionExecutor;
 * - a registered name (`mp`, `multiproc`, `uniproc`, and the remote backends registered with
 *   `registerExecutor`), imported lazily;
 * - `"module#Export"` (default export without `#`); relative paths resolve against `process.cwd()`, and
 *   `.ts` files work under tsx.
 *
 * A value of the wrong kind (not a class, or a class not extending DiffusionExecutor) throws an
 * {@link ExecutorTypeError} (an ExecutorResolutionError); a name or module that cannot be found, or a missing export,
 * throws an ExecutorResolutionError. Both say what was tried and carry the code `OMNI_ERR_EXECUTOR_RESOLUTION`.
 * A module-provided executor must extend the same DiffusionExecutor this engine uses (import it from the
 * same package build).
 *
 * @example
 * ```ts
 * const Executor = await resolveExecutor("uniproc");
 * const Custom = await resolveExecutor("./my-executor.ts#MyExecutor");
 * ```
 */
export async function resolveExecutor(spec: ExecutorSpec | unknown): Promise<DiffusionExecutorClass> {
  if (spec === undefined || spec === null) return loadBuiltin("multiproc");
  if (typeof spec === "function") return checkExecutorClass(spec, `class ${spec.name || "(anonymous)"}`, spec);
  if (typeof spec !== "string") {
    throw new ExecutorTypeError(`executorClass must be a built-in name, a "module#Export" string or a DiffusionExecutor subclass, got ${describe(spec)}`, {
      data: { spec: describe(spec) },
    });
  }
  const trimmed = spec.trim();
  if (!trimmed) throw new ExecutorResolutionError("executorClass is an empty string", { data: { spec } });
  if (executorLoader(trimmed)) return loadBuiltin(trimmed);

  const found = await importSpec(trimmed);
  if (!found.ok) {
    const isBareName = !/[#/\\.:]/.test(trimmed);
    const notBuiltin = isBareName ? `it is not a built-in executor (${registeredExecutors().join(", ")}), and ` : "";
    throw new ExecutorResolutionError(`cannot resolve executorClass "${spec}": ${notBuiltin}${found.reason}`, {
      data: { spec, module: found.module, export: found.exportName, builtins: registeredExecutors() },
    });
  }
  return checkExecutorClass(found.value, `export "${found.exportName}" of "${found.module}"`, spec);
}

/** Names `resolveExecutor` accepts as built-in executors (the registry's names). */
export function builtinExecutorNames(): string[] {
  return registeredExecutors();
}

async function loadBuiltin(name: string): Promise<DiffusionExecutorClass> {
  const loader = executorLoader(name);
  if (!loader) {
    throw new ExecutorResolutionError(`no built-in executor "${name}" (registered: ${registeredExecutors().join(", ")})`, { data: { spec: name } });
  }
  let cls: unknown;
  try {
    cls = await loader();
  } catch (err) {
    throw new ExecutorResolutionError(`built-in executor "${name}" failed to load: ${toOmniError(err).message}`, { cause: err, data: { spec: name } });
  }
  return checkExecutorClass(cls, `built-in executor "${name}"`, name);
}

function checkExecutorClass(value: unknown, what: string, spec: unknown): DiffusionExecutorClass {
  const data = { spec: typeof spec === "string" ? spec : describe(spec) };
  if (typeof value !== "function" || !value.prototype) {
    throw new ExecutorTypeError(`${what} is not a class (got ${describe(value)}); executorClass must extend DiffusionExecutor`, { data });
  }
  if (value === DiffusionExecutor || !(value.prototype instanceof DiffusionExecutor)) {
    throw new ExecutorTypeError(
      `${what} must extend DiffusionExecutor${value === DiffusionExecutor ? " (it is the abstract base itself)" : ""}`,
      { data },
    );
  }
  return value as DiffusionExecutorClass;
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (typeof v === "function") return `function ${v.name || "(anonymous)"}`;
  if (typeof v === "object") return `an object (${Object.prototype.toString.call(v)})`;
  return `${typeof v} ${JSON.stringify(v)}`;
}
