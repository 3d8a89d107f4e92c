import type { SerializedError } from "../errors/omni-error.js";

/**
 * `executorClass` is a value of the wrong kind: not a class, or a class that does not extend
 * DiffusionExecutor. A real `TypeError` (so `instanceof TypeError` holds, as callers of a
 * "wrong type" check expect) that still carries the OmniError fields: the stable `code`
 * `OMNI_ERR_EXECUTOR_RESOLUTION` (the same code as ExecutorResolutionError), `statusCode` and `data`.
 *
 * @example
 * ```ts
 * import { resolveExecutor } from "./resolve-executor.js";
 * try {
 *   await resolveExecutor(class NotAnExecutor {} as never);
 * } catch (err) {
 *   if (err instanceof ExecutorTypeError) console.error(err.code, err.message);
 * }
 * ```
 */
export class ExecutorTypeError extends TypeError {
  readonly code = "OMNI_ERR_EXECUTOR_RESOLUTION";
  readonly statusCode = 500;
  readonly retryable = false;
  readonly data: Record<string, unknown>;

  constructor(message: string, opts: { cause?: unknown; data?: Record<string, unknown> } = {}) {
    super(message, opts.cause !== undefined ? { cause: opts.cause } : undefined);
    this.name = "ExecutorTypeError";
    this.data = opts.data ?? {};
  }

  toJSON(): SerializedError {
    return { name: this.name, code: this.code, message: this.message, data: this.data };
  }
}
