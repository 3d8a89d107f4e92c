/**
 * Every error omni-diffusion raises is an {@link OmniError} with a stable `code` (`OMNI_ERR_*`).
 * Callers and retry policies branch on `code`, never on message text. Errors that cross a process or
 * network boundary travel as {@link SerializedError} and are rebuilt into the same class.
 */
export interface SerializedError {
  name: string;
  code: string;
  message: string;
  data?: Record<string, unknown>;
}

export interface OmniErrorOptions {
  cause?: unknown;
  data?: Record<string, unknown>;
  statusCode?: number;
}

export class OmniError extends Error {
  /** Stable machine-readable code. */
  readonly code: string;
  /** HTTP status a server should answer with for this error. */
  readonly statusCode: number;
  /** Structured details (field name, rank, method, ...). */
  readonly data: Record<string, unknown>;
  /** Whether a retry of the same work could succeed (transport failures, worker restarts). */
  readonly retryable: boolean;

  constructor(message: string, code = "OMNI_ERR_INTERNAL", opts: OmniErrorOptions & { retryable?: boolean } = {}) {
    super(message, opts.cause !== undefined ? { cause: opts.cause } : undefined);
    this.name = new.target.name;
    this.code = code;
    this.statusCode = opts.statusCode ?? 500;
    this.data = opts.data ?? {};
    this.retryable = opts.retryable ?? false;
  }

  toJSON(): SerializedError {
    return serializeError(this);
  }
}

/** Invalid user input: a request field, a config field, a CLI flag. `data.field` names the culprit. */
export class ValidationError extends OmniError {
  constructor(message: string, opts: OmniErrorOptions & { field?: string } = {}) {
    super(message, "OMNI_ERR_VALIDATION", { statusCode: 400, ...opts, data: { ...opts.data, field: opts.field } });
  }
  get field(): string | undefined {
    return this.data.field as string | undefined;
  }
}

/**
 * A request value beyond a deployment or model limit (size, steps, images, prompt length, memory budget).
 * A ValidationError (same code, HTTP 400) whose `data.reason` is `"limit_exceeded"`; `data.limit` or
 * `data.allowed` says what is accepted. Servers answer it with the `limit_exceeded` error code.
 */
export class LimitExceededError extends ValidationError {
  constructor(message: string, opts: OmniErrorOptions & { field?: string } = {}) {
    super(message, { ...opts, field: opts.field ?? (opts.data?.field as string | undefined), data: { ...opts.data, reason: "limit_exceeded" } });
  }
}

/** Invalid engine configuration (bad `OmniDiffusionConfig`). */
export class ConfigError extends OmniError {
  constructor(message: string, opts: OmniErrorOptions & { field?: string } = {}) {
    super(message, "OMNI_ERR_CONFIG", { statusCode: 400, ...opts, data: { ...opts.data, field: opts.field } });
  }
}

/** `executorClass` could not be resolved to a DiffusionExecutor subclass. */
export class ExecutorResolutionError extends OmniError {
  constructor(message: string, opts: OmniErrorOptions = {}) {
    super(message, "OMNI_ERR_EXECUTOR_RESOLUTION", opts);
  }
}

/** A model folder could not be loaded (missing file, unknown pipeline class, wrong input names). */
export class ModelLoadError extends OmniError {
  constructor(message: string, opts: OmniErrorOptions = {}) {
    super(message, "OMNI_ERR_MODEL_LOAD", opts);
  }
}

/** A wait ran past its deadline. `data.method` names the RPC when there is one. */
export class TimeoutError extends OmniError {
  constructor(message: string, opts: OmniErrorOptions = {}) {
    super(message, "OMNI_ERR_TIMEOUT", { statusCode: 504, retryable: true, ...opts });
  }
}

/** A worker failed or died. `data.rank` names it. */
export class WorkerError extends OmniError {
  constructor(message: string, opts: OmniErrorOptions & { retryable?: boolean } = {}) {
    super(message, "OMNI_ERR_WORKER", opts);
  }
}

/** A worker process died (exit, signal) with work in flight. */
export class WorkerDiedError extends OmniError {
  constructor(message: string, opts: OmniErrorOptions = {}) {
    super(message, "OMNI_ERR_WORKER_DIED", { retryable: true, statusCode: 503, ...opts });
  }
}

/** Something was used after `close()`. */
export class ClosedError extends OmniError {
  constructor(message: string, opts: OmniErrorOptions = {}) {
    super(message, "OMNI_ERR_CLOSED", { statusCode: 503, ...opts });
  }
}

/** The request was aborted by its caller (`engine.abort`, an AbortSignal, a client disconnect). */
export class AbortedError extends OmniError {
  constructor(message: string, opts: OmniErrorOptions = {}) {
    super(message, "OMNI_ERR_ABORTED", { statusCode: 499, ...opts });
  }
}

/** A health check failed. */
export class UnhealthyError extends OmniError {
  constructor(message: string, opts: OmniErrorOptions = {}) {
    super(message, "OMNI_ERR_UNHEALTHY", { statusCode: 503, retryable: true, ...opts });
  }
}

/** The engine's queue is full; try again later. */
export class QueueFullError extends OmniError {
  constructor(message: string, opts: OmniErrorOptions = {}) {
    super(message, "OMNI_ERR_QUEUE_FULL", { statusCode: 429, retryable: true, ...opts });
  }
}

/** An RPC method that no worker (nor extension) implements. */
export class UnknownMethodError extends OmniError {
  constructor(message: string, opts: OmniErrorOptions = {}) {
    super(message, "OMNI_ERR_UNKNOWN_METHOD", { statusCode: 404, ...opts });
  }
}

/** A remote endpoint failed at the transport level (refused, reset, 5xx). */
export class TransportError extends OmniError {
  constructor(message: string, opts: OmniErrorOptions & { retryable?: boolean } = {}) {
    super(message, "OMNI_ERR_TRANSPORT", { statusCode: 502, retryable: true, ...opts });
  }
}

/** A request to a server lacked the API key it requires, or carried a wrong one. */
export class UnauthorizedError extends OmniError {
  constructor(message: string, opts: OmniErrorOptions = {}) {
    super(message, "OMNI_ERR_UNAUTHORIZED", { statusCode: 401, ...opts });
  }
}

/** The remote (or its cloud provider) refused a valid identity: the key or role lacks a permission (HTTP 403). */
export class PermissionError extends OmniError {
  constructor(message: string, opts: OmniErrorOptions = {}) {
    super(message, "OMNI_ERR_PERMISSION", { statusCode: 403, ...opts });
  }
}

/** The remote has no such route, endpoint or resource (HTTP 404, gRPC UNIMPLEMENTED / NOT_FOUND): a wrong URL or name. */
export class NotFoundError extends OmniError {
  constructor(message: string, opts: OmniErrorOptions = {}) {
    super(message, "OMNI_ERR_NOT_FOUND", { statusCode: 404, ...opts });
  }
}

/** The Hugging Face Hub refused access: a gated or private repository without an accepted licence or a valid `HF_TOKEN`. */
export class HubAuthError extends OmniError {
  constructor(message: string, opts: OmniErrorOptions = {}) {
    super(message, "OMNI_ERR_HUB_AUTH", { statusCode: 401, ...opts });
  }
}

/** A Hub repository, revision or file that does not exist (or is private and no token was sent). */
export class HubNotFoundError extends OmniError {
  constructor(message: string, opts: OmniErrorOptions = {}) {
    super(message, "OMNI_ERR_HUB_NOT_FOUND", { statusCode: 404, ...opts });
  }
}

/** A Hub repository that is not a diffusers ONNX export (no model_index.json, no ONNX UNet). */
export class ModelLayoutError extends OmniError {
  constructor(message: string, opts: OmniErrorOptions = {}) {
    super(message, "OMNI_ERR_MODEL_LAYOUT", { statusCode: 422, ...opts });
  }
}

/** A downloaded file whose size or checksum differs from what the server announced; the file is not kept. */
export class IntegrityError extends OmniError {
  constructor(message: string, opts: OmniErrorOptions = {}) {
    super(message, "OMNI_ERR_INTEGRITY", { statusCode: 502, retryable: true, ...opts });
  }
}

/** A model that cannot fit the worker's memory budget (or its loaded-models cap) even after evicting every idle one; `data` has the numbers. */
export class ResourceExhaustedError extends OmniError {
  constructor(message: string, opts: OmniErrorOptions = {}) {
    super(message, "OMNI_ERR_RESOURCE_EXHAUSTED", { statusCode: 507, ...opts });
  }
}

const CLASSES: Record<string, new (message: string, opts?: OmniErrorOptions) => OmniError> = {
  ValidationError,
  LimitExceededError,
  ConfigError,
  ExecutorResolutionError,
  ModelLoadError,
  TimeoutError,
  WorkerError,
  WorkerDiedError,
  ClosedError,
  AbortedError,
  UnhealthyError,
  QueueFullError,
  UnknownMethodError,
  TransportError,
  UnauthorizedError,
  PermissionError,
  NotFoundError,
  HubAuthError,
  HubNotFoundError,
  ModelLayoutError,
  IntegrityError,
  ResourceExhaustedError,
};

/** Every code omni-diffusion can raise; `docs/errors.md` lists the same set (a test keeps them in step). */
export const ERROR_CODES = [
  "OMNI_ERR_INTERNAL",
  "OMNI_ERR_VALIDATION",
  "OMNI_ERR_CONFIG",
  "OMNI_ERR_EXECUTOR_RESOLUTION",
  "OMNI_ERR_MODEL_LOAD",
  "OMNI_ERR_TIMEOUT",
  "OMNI_ERR_WORKER",
  "OMNI_ERR_WORKER_DIED",
  "OMNI_ERR_CLOSED",
  "OMNI_ERR_ABORTED",
  "OMNI_ERR_UNHEALTHY",
  "OMNI_ERR_QUEUE_FULL",
  "OMNI_ERR_UNKNOWN_METHOD",
  "OMNI_ERR_TRANSPORT",
  "OMNI_ERR_UNAUTHORIZED",
  "OMNI_ERR_PERMISSION",
  "OMNI_ERR_NOT_FOUND",
  "OMNI_ERR_HUB_AUTH",
  "OMNI_ERR_HUB_NOT_FOUND",
  "OMNI_ERR_MODEL_LAYOUT",
  "OMNI_ERR_INTEGRITY",
  "OMNI_ERR_RESOURCE_EXHAUSTED",
] as const;

/** Turns any thrown value into the wire shape `{name, code, message, data}`. */
export function serializeError(err: unknown): SerializedError {
  if (err instanceof OmniError) {
    return { name: err.name, code: err.code, message: err.message, data: err.data };
  }
  if (err instanceof Error) {
    return { name: err.name, code: "OMNI_ERR_INTERNAL", message: err.message, data: err.stack ? { stack: err.stack } : {} };
  }
  return { name: "Error", code: "OMNI_ERR_INTERNAL", message: String(err) };
}

/** Rebuilds an error received from a worker or a remote peer into its original class. */
export function deserializeError(e: SerializedError, extraData: Record<string, unknown> = {}): OmniError {
  // hasOwn: the name comes from a peer; "constructor" or "toString" must not pick Object.prototype's members.
  const Cls = typeof e.name === "string" && Object.hasOwn(CLASSES, e.name) ? CLASSES[e.name] : undefined;
  const data = { ...e.data, ...extraData };
  if (Cls) {
    const err = new Cls(e.message, { data });
    if (e.name === "ValidationError" || e.name === "LimitExceededError" || e.name === "ConfigError") (err.data as Record<string, unknown>).field = e.data?.field;
    return err;
  }
  return new OmniError(e.message, e.code || "OMNI_ERR_INTERNAL", { data: { ...data, remoteName: e.name } });
}

/** Wraps anything thrown into an OmniError, keeping OmniErrors as they are. */
export function toOmniError(err: unknown): OmniError {
  if (err instanceof OmniError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new OmniError(message, "OMNI_ERR_INTERNAL", { cause: err });
}
