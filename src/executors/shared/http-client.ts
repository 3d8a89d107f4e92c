import { Agent, errors, request, type Dispatcher, type FormData } from "undici";
import { OmniError, TransportError } from "../../errors/omni-error.js";
import type { Deadline } from "../../policies/deadline.js";
import { connectionError } from "../../errors/connection-error.js";
import { SseParser, TIMEOUT_HEADER, errorFromResponse, type SseEvent } from "../../protocol/wire.js";

/** Largest response body the client reads, bytes (a batch of images; a hostile server cannot exhaust memory). */
const MAX_RESPONSE_BYTES = 256 * 1024 * 1024;

/** One HTTP call of a remote executor. */
export interface HttpCall {
  method: "GET" | "POST";
  /** Path below the endpoint's base URL, starting with `/`. */
  path: string;
  body?: unknown;
  /** A multipart body instead of JSON (undici sets the content type and boundary). */
  form?: FormData;
  headers?: Record<string, string>;
  /** The call's deadline: aborts the request, and its remaining time is sent in `x-omni-timeout-ms`. */
  deadline: Deadline;
  /** Asks for `text/event-stream` and calls this for each event but the last; the last event's data is the result. */
  onEvent?: (e: SseEvent) => void;
}

/**
 * The undici client every HTTP-based executor shares: keep-alive connections per origin, JSON in and out,
 * the deadline sent along, and failures turned into OmniErrors (socket errors: retryable TransportError;
 * HTTP errors: {@link errorFromResponse}; the deadline or an abort: the deadline's reason).
 */
export class HttpClient {
  readonly baseUrl: string;
  readonly #dispatcher: Agent;
  readonly #apiKey: string | undefined;

  constructor(baseUrl: string, opts: { apiKey?: string; connections?: number } = {}) {
    this.baseUrl = baseUrl;
    this.#apiKey = opts.apiKey;
    this.#dispatcher = new Agent({ connections: opts.connections ?? 64, keepAliveTimeout: 10_000, maxResponseSize: MAX_RESPONSE_BYTES });
  }

  /** Sends the call; resolves with the parsed JSON body (or, streaming, the final event's data). */
  async call(c: HttpCall): Promise<unknown> {
    const headers: Record<string, string> = { accept: c.onEvent ? "text/event-stream" : "application/json", ...c.headers };
    if (this.#apiKey) headers.authorization = `Bearer ${this.#apiKey}`;
    headers[TIMEOUT_HEADER] = String(Math.max(1, Math.floor(c.deadline.remaining())));
    let body: string | FormData | undefined;
    if (c.form) body = c.form;
    else if (c.body !== undefined) {
      body = JSON.stringify(c.body);
      headers["content-type"] = "application/json";
    }
    let res: Dispatcher.ResponseData;
    try {
      res = await request(`${this.baseUrl}${c.path}`, {
        method: c.method,
        headers,
        body,
        signal: c.deadline.signal,
        dispatcher: this.#dispatcher,
        // The deadline bounds the whole call; these only stop undici's own shorter defaults from firing first.
        headersTimeout: c.deadline.remaining() + 1_000,
        bodyTimeout: c.deadline.remaining() + 1_000,
      });
    } catch (err) {
      throw this.#failure(err, c.deadline);
    }
    try {
      const isStream = String(res.headers["content-type"] ?? "").startsWith("text/event-stream");
      if (res.statusCode >= 200 && res.statusCode < 300 && isStream && c.onEvent) return await this.#readEvents(res, c.onEvent);
      const text = await res.body.text();
      const parsed = parseJson(text);
      if (res.statusCode >= 200 && res.statusCode < 300) return parsed;
      throw errorFromResponse(res.statusCode, parsed, this.baseUrl, res.headers["retry-after"]);
    } catch (err) {
      throw this.#failure(err, c.deadline);
    }
  }

  async #readEvents(res: Dispatcher.ResponseData, onEvent: (e: SseEvent) => void): Promise<unknown> {
    const parser = new SseParser();
    res.body.setEncoding("utf8");
    for await (const chunk of res.body as AsyncIterable<string>) {
      for (const e of parser.push(chunk)) {
        if (e.event === "result") return JSON.parse(e.data);
        if (e.event === "error") {
          const data = JSON.parse(e.data) as { status?: unknown };
          throw errorFromResponse(typeof data.status === "number" ? data.status : 500, data, this.baseUrl);
        }
        onEvent(e);
      }
    }
    throw new TransportError(`${this.baseUrl}: the event stream ended without a result`, { data: { endpoint: this.baseUrl } });
  }

  #failure(err: unknown, deadline: Deadline): OmniError {
    if (deadline.signal.aborted) return deadline.signal.reason as OmniError;
    if (err instanceof OmniError) return err;
    return protocolMismatch(err, this.baseUrl) ?? connectionError(err, this.baseUrl);
  }

  close(): Promise<void> {
    return this.#dispatcher.close();
  }
}

/**
 * Something answers at the endpoint, but not in HTTP/1.1 (a gRPC port: HTTP/2 frames), or not in TLS
 * where `https://` was asked for. No retry changes that, so it counts as unreachable (`data.unreachable`):
 * calls and `init` give up within `refusedTimeoutMs`, like a refused connection, naming the mismatch.
 */
function protocolMismatch(err: unknown, endpoint: string): TransportError | null {
  const code = (err as { code?: unknown } | null)?.code;
  let what: string;
  if (err instanceof errors.HTTPParserError) {
    what = `the server there does not speak HTTP/1.1 (is it a gRPC port? use executorClass "grpc" for those)`;
  } else if (code === "ERR_SSL_WRONG_VERSION_NUMBER" || code === "EPROTO") {
    what = `the server there does not speak TLS (is it a plain http:// port?)`;
  } else return null;
  const detail = String((err as Error).message ?? "").split("\n")[0]!.trim();
  return new TransportError(`${endpoint}: protocol mismatch: ${what}: ${detail}`, {
    cause: err,
    data: { endpoint, errno: "EPROTO", unreachable: true, protocolMismatch: true },
  });
}

function parseJson(text: string): unknown {
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
