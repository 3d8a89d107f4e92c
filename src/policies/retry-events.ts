import { channel } from "node:diagnostics_channel";
import { OmniError } from "../errors/omni-error.js";

/**
 * The `node:diagnostics_channel` name every remote executor publishes its {@link RetryEvent}s on (undici's
 * way of making retries observable): a CLI or a log can subscribe before the executor exists, so the
 * waits of `init()` are seen too.
 *
 * @example
 * ```ts
 * import { subscribe } from "node:diagnostics_channel";
 * subscribe(RETRY_CHANNEL, (e) => process.stderr.write(`${formatRetry(e as RetryEvent)}\n`));
 * ```
 */
export const RETRY_CHANNEL = "omni-diffusion:executor:retry";

/** One retry decision, for logs and tests (delays are computed, not measured). */
export interface RetryEvent {
  /** `generate`, `collectiveRpc("…")`, or `init` (waiting for a first healthy endpoint). */
  operation: string;
  /** The attempt that failed, 1-based; the next one is `attempt + 1`. */
  attempt: number;
  /** Most attempts the call may make (first try included); undefined when bounded by time only (`init`). */
  maxAttempts: number | undefined;
  delayMs: number;
  endpoint: string | undefined;
  error: OmniError;
  /** The failure in a word: an HTTP status, a socket errno, a gRPC status, else the error code. */
  reason: string;
}

const retries = channel(RETRY_CHANNEL);

/** The gRPC statuses a retry can meet (grpc-js is not imported here: it loads only with the grpc executor). */
const GRPC_STATUS_NAMES: Record<number, string> = { 2: "UNKNOWN", 4: "DEADLINE_EXCEEDED", 8: "RESOURCE_EXHAUSTED", 10: "ABORTED", 13: "INTERNAL", 14: "UNAVAILABLE" };

/** Publishes one event on {@link RETRY_CHANNEL} (free when nobody subscribes). */
export function publishRetry(e: RetryEvent): void {
  if (retries.hasSubscribers) retries.publish(e);
}

/** An error's cause in a word, read from its structured data (never from its message). */
export function describeFailure(err: OmniError): string {
  const d = err.data;
  if (typeof d.status === "number") return String(d.status);
  if (typeof d.errno === "string" && d.errno !== "ERR") return d.errno;
  if (typeof d.grpcStatus === "number") return `gRPC ${GRPC_STATUS_NAMES[d.grpcStatus] ?? d.grpcStatus}`;
  if (d.circuitOpen === true) return "circuit open";
  return err.code;
}

/** `endpoint: message`, without repeating an endpoint the message already names. */
export function withEndpoint(endpoint: string, err: OmniError): string {
  return err.message.includes(endpoint) ? err.message : `${endpoint}: ${err.message}`;
}

/** The one line a CLI prints for a retry: `retrying http://w:8000 after 503 (attempt 2/4) in 120ms`. */
export function formatRetry(e: RetryEvent): string {
  const where = e.endpoint ?? "the endpoints";
  const of = e.maxAttempts ? `/${e.maxAttempts}` : "";
  const what = e.operation === "init" ? "waiting for" : "retrying";
  return `omni-diffusion: ${what} ${where} after ${e.reason} (attempt ${e.attempt + 1}${of}) in ${e.delayMs}ms: ${e.error.message}`;
}
