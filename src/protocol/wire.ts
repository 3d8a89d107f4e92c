/**
 * The HTTP/JSON side of the worker protocol (see `docs/wire-protocol.md`), shared by the remote executors
 * and the worker server: paths, headers, body schemas, SSE framing, and how an HTTP failure becomes an
 * OmniError on the client.
 */
import { z } from "zod";
import {
  NotFoundError,
  OmniError,
  PermissionError,
  QueueFullError,
  TimeoutError,
  TransportError,
  UnauthorizedError,
  ValidationError,
  deserializeError,
  serializeError,
  type SerializedError,
} from "../errors/omni-error.js";

export const PATHS = {
  generate: "/v1/diffusion/generate",
  rpc: "/v1/diffusion/rpc",
  abort: "/v1/diffusion/abort",
  health: "/health",
  /** SageMaker container contract. */
  ping: "/ping",
  invocations: "/invocations",
} as const;

/** Remaining time of the caller's deadline, ms: the server stops work nobody waits for. */
export const TIMEOUT_HEADER = "x-omni-timeout-ms";
/** SageMaker passes this header through to the container; the executor puts `timeout_ms=<ms>` in it. */
export const SAGEMAKER_ATTRIBUTES_HEADER = "x-amzn-sagemaker-custom-attributes";
/** Most requests one generate call may carry. */
export const MAX_REQUESTS_PER_CALL = 256;

/** `POST /v1/diffusion/generate` (and `/invocations`): request dicts are validated one by one by the server. */
export const generateBodySchema = z.object({ requests: z.array(z.unknown()).min(1).max(MAX_REQUESTS_PER_CALL) }).strict();

/** `POST /v1/diffusion/rpc`. `timeout` is ms. */
export const rpcBodySchema = z
  .object({
    method: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, "a method name (letters, digits, _; at most 128)"),
    args: z.array(z.unknown()).max(64).default([]),
    kwargs: z.record(z.string(), z.unknown()).default({}),
    unique_reply_rank: z.number().int().min(0).nullish(),
    timeout: z.number().int().min(1).nullish(),
  })
  .strict();

/** `POST /v1/diffusion/abort`. */
export const abortBodySchema = z.object({ request_ids: z.array(z.string().min(1).max(256)).min(1).max(MAX_REQUESTS_PER_CALL) }).strict();

export type RpcBody = z.input<typeof rpcBodySchema>;

/** Every error response body: `{"error": {name, code, message, data}}`. */
export function errorBody(err: OmniError): { error: SerializedError } {
  return { error: serializeError(err) };
}

/** 408, 429 and 5xx other than 501 are worth another try (elsewhere, or later). */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || (status >= 500 && status !== 501 && status !== 505);
}

/** `Retry-After` (seconds, or an HTTP date) in ms; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | string[] | undefined): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (!v) return undefined;
  const secs = Number(v);
  if (Number.isFinite(secs) && secs >= 0) return secs * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

const isSerialized = (v: unknown): v is SerializedError =>
  typeof v === "object" && v !== null && typeof (v as SerializedError).name === "string" && typeof (v as SerializedError).code === "string" && typeof (v as SerializedError).message === "string";

/**
 * A server's own error, rebuilt; when the transport status says a retry may help but the error's class
 * does not, it is wrapped in a retryable TransportError (the remote error stays its `cause`).
 */
export function rebuildRemoteError(serialized: SerializedError, retryable: boolean, endpoint: string, data: Record<string, unknown>): OmniError {
  const remote = deserializeError(serialized, data);
  if (retryable && !remote.retryable) return new TransportError(`${endpoint}: ${remote.message}`, { cause: remote, data: { ...data, remote: serialized } });
  return remote;
}

/**
 * A non-2xx HTTP answer as an OmniError. Our own servers send `{"error": SerializedError}` (rebuilt into
 * its class); other servers (an OpenAI-compatible one, a proxy) are mapped by status, reading an OpenAI
 * style `{"error": {message, param}}` when there is one. A retryable status always yields a retryable
 * error (a TransportError wrapping the remote one when its class is not retryable by itself).
 */
export function errorFromResponse(status: number, body: unknown, endpoint: string, retryAfter?: string | string[]): OmniError {
  const data: Record<string, unknown> = { endpoint, status };
  const retryAfterMs = parseRetryAfter(retryAfter);
  if (retryAfterMs !== undefined) data.retryAfterMs = retryAfterMs;
  const retryable = isRetryableStatus(status);
  const inner = (body as { error?: unknown } | null)?.error;
  if (isSerialized(inner)) return rebuildRemoteError(inner, retryable, endpoint, data);
  const foreign = inner as { message?: unknown; param?: unknown } | string | undefined;
  const detail = typeof foreign === "string" ? foreign : typeof foreign?.message === "string" ? foreign.message : snippet(body);
  const message = `${endpoint} answered ${status}: ${detail}`;
  const field = typeof foreign === "object" && typeof foreign?.param === "string" ? foreign.param : undefined;
  if (status === 401) return new UnauthorizedError(message, { data });
  if (status === 403) return new PermissionError(message, { data });
  if (status === 404) return new NotFoundError(message, { data });
  if (status === 429) return new QueueFullError(message, { data });
  if (status === 408) return new TimeoutError(message, { data });
  if (!retryable && status >= 400 && status < 500) return new ValidationError(message, { field, data, statusCode: status });
  return new TransportError(message, { data, retryable });
}

function snippet(body: unknown): string {
  const s = typeof body === "string" ? body : JSON.stringify(body) ?? "";
  return s.length > 200 ? `${s.slice(0, 200)}...` : s || "(empty body)";
}

/** The `outputs` array of a generate reply, or a (non-retryable) TransportError for a reply that is not one. */
export function outputsOf(reply: unknown, endpoint: string): unknown[] {
  const outputs = (reply as { outputs?: unknown } | null)?.outputs;
  if (!Array.isArray(outputs)) throw new TransportError(`${endpoint}: the reply has no "outputs" array`, { retryable: false, data: { endpoint } });
  return outputs;
}

/** One server-sent event. */
export interface SseEvent {
  event: string;
  data: string;
}

/** Frames one server-sent event (data must be one line: JSON is). */
export function sseFrame(event: string, data: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

/** Splits a server-sent event stream into events (an incremental parser: feed chunks, get complete events). */
export class SseParser {
  #buf = "";

  push(chunk: string): SseEvent[] {
    this.#buf += chunk;
    const events: SseEvent[] = [];
    let end: number;
    while ((end = this.#buf.indexOf("\n\n")) >= 0) {
      const block = this.#buf.slice(0, end);
      this.#buf = this.#buf.slice(end + 2);
      let event = "message";
      const data: string[] = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) events.push({ event, data: data.join("\n") });
    }
    return events;
  }
}
