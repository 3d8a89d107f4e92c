import { DiffusionOutput } from "../../core/output.js";
import { OmniError, deserializeError, serializeError } from "../../errors/omni-error.js";

/** Where a server puts the details it keeps from clients. */
export type ErrorLog = (err: OmniError, requestId: string) => void;

/**
 * True for errors whose message is ours to show: client errors (4xx) and the 5xx that describe the service's
 * state (unavailable, timeout, queue full, transport). A 500 is an unexpected failure whose message can
 * carry onnxruntime internals (file paths, node names, allocation sizes): it stays in the log.
 */
export function isPublicError(err: OmniError): boolean {
  return err.statusCode !== 500;
}

/**
 * The error a client may see: `err` itself when {@link isPublicError}, else an error of the same class and
 * code whose message only says where the details are (`requestId` names the log line); `log` receives the
 * original.
 *
 * @example
 * ```ts
 * const shown = publicError(toOmniError(err), req.id, (e, id) => req.log.error({ err: e, requestId: id }, "request failed"));
 * ```
 */
export function publicError(err: OmniError, requestId: string, log: ErrorLog): OmniError {
  if (isPublicError(err)) return err;
  log(err, requestId);
  const s = serializeError(err);
  return deserializeError({ name: s.name, code: s.code, message: `internal error (request ${requestId}); the details are in the server log`, data: { requestId } });
}

/**
 * A DiffusionOutput whose per-request errors went through {@link publicError} (one log line each); the
 * batch-level `error` text, when set, is rebuilt from the public messages.
 */
export function publicOutput(out: DiffusionOutput, log: ErrorLog): DiffusionOutput {
  const entries = Object.entries(out.errors);
  if (entries.every(([, e]) => isPublicError(e))) return out;
  const errors = Object.fromEntries(entries.map(([id, e]) => [id, publicError(e, id, log)]));
  const error = out.error === null ? null : Object.values(errors).map((e) => e.message).join("; ");
  return new DiffusionOutput({ output: out.output, error, errors, trajectoryLatents: out.trajectoryLatents, trajectoryTimesteps: out.trajectoryTimesteps, metrics: out.metrics });
}
