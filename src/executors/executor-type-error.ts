import { ExecutorResolutionError, type OmniErrorOptions } from "../errors/omni-error.js";

/**
 * `executorClass` is a value of the wrong kind: not a class, or a class that does not extend
 * DiffusionExecutor. An {@link ExecutorResolutionError} (so an `OmniError`, with the stable code
 * `OMNI_ERR_EXECUTOR_RESOLUTION`), so the CLI and servers report it as one clear line like every other
 * known error. It is no longer a `TypeError`: branch on `code` or `instanceof ExecutorResolutionError`.
 *
 * @example
 * ```ts
 * import { ExecutorTypeError, resolveExecutor } from "omni-diffusion";
 * try {
 *   await resolveExecutor(class NotAnExecutor {} as never);
 * } catch (err) {
 *   if (err instanceof ExecutorTypeError) console.error(err.code, err.message);
 * }
 * ```
 */
export class ExecutorTypeError extends ExecutorResolutionError {
  constructor(message: string, opts: OmniErrorOptions = {}) {
    super(message, opts);
  }
}
