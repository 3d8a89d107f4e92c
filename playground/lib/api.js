// @ts-check
import { readSse } from "./sse.js";

/** An API call that failed, with a message a person can read. */
export class ApiError extends Error {
  /** @param {string} message @param {number} status 0: no HTTP answer @param {string | null} code */
  constructor(message, status, code) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

/**
 * The readable error for a failed response: the server's own message (OpenAI error shape) with a hint for
 * the statuses a person can act on.
 * @param {number} status
 * @param {string} bodyText
 */
export function errorFromResponse(status, bodyText) {
  /** @type {{ message?: unknown, code?: unknown } | undefined} */
  let err;
  try {
    const body = JSON.parse(bodyText);
    // The OpenAI shape, else Replicate's (`{detail, status, title}`: the predictions API).
    err = body?.error ?? (typeof body?.detail === "string" ? { message: body.detail } : undefined);
  } catch {
    err = undefined;
  }
  const message = typeof err?.message === "string" && err.message ? err.message : bodyText.trim().slice(0, 200) || `HTTP ${status}`;
  const code = typeof err?.code === "string" ? err.code : null;
  const hint = status === 401 ? "Check the API key. " : status === 429 ? "The server is busy; try again shortly. " : "";
  return new ApiError(`${hint}${message} (HTTP ${status})`, status, code);
}

/**
 * Headers of every API call: the key as a Bearer token, when there is one.
 * @param {string} apiKey
 * @returns {Record<string, string>}
 */
export function authHeaders(apiKey) {
  return apiKey ? { authorization: `Bearer ${apiKey}` } : {};
}

/**
 * GET a JSON (or text) API route, authorized.
 * @param {string} path
 * @param {string} apiKey
 * @param {{ signal?: AbortSignal, text?: boolean }} [opts]
 * @returns {Promise<any>}
 */
export async function getApi(path, apiKey, opts = {}) {
  const res = await fetch(path, { headers: authHeaders(apiKey), signal: opts.signal });
  if (!res.ok) throw errorFromResponse(res.status, await res.text());
  return opts.text ? res.text() : res.json();
}

/**
 * POST JSON to an API route, authorized; resolves with the JSON answer.
 * @param {string} path
 * @param {unknown} body undefined: no body
 * @param {string} apiKey
 * @param {{ signal?: AbortSignal }} [opts]
 * @returns {Promise<any>}
 */
export async function postApi(path, body, apiKey, opts = {}) {
  const headers = { ...authHeaders(apiKey), ...(body === undefined ? {} : { "content-type": "application/json" }) };
  const res = await fetch(path, { method: "POST", headers, body: body === undefined ? undefined : JSON.stringify(body), signal: opts.signal });
  if (!res.ok) throw errorFromResponse(res.status, await res.text());
  return res.json();
}

/**
 * @typedef {object} StreamHandlers
 * @property {(requestId: string | null) => void} [onStart] the server accepted the request (SSE opened)
 * @property {(event: { b64_json: string, index: number, partial_image_index: number }) => void} [onPartial]
 * @property {(event: { b64_json: string, index: number, size: string }) => void} [onCompleted]
 */

/**
 * Streams one generation: POST with `stream: true`, then the SSE events until the server ends the stream.
 * Aborting `signal` closes the connection, which the server treats as a cancel (it stops the request at
 * the next denoising step). Rejects with an {@link ApiError} for a refused request or an `error` event.
 * @param {object} body the request body (lib/params.js toRequestBody)
 * @param {string} apiKey
 * @param {AbortSignal} signal
 * @param {StreamHandlers} handlers
 */
export async function streamGeneration(body, apiKey, signal, handlers) {
  const res = await fetch("/v1/images/generations", {
    method: "POST",
    headers: { "content-type": "application/json", accept: "text/event-stream", ...authHeaders(apiKey) },
    body: JSON.stringify(body),
    signal,
  });
  if (!res.ok) throw errorFromResponse(res.status, await res.text());
  if (!res.body) throw new ApiError("The server answered without a body", res.status, null);
  handlers.onStart?.(res.headers.get("x-request-id"));
  let completed = 0;
  for await (const ev of readSse(res.body)) {
    const data = JSON.parse(ev.data);
    if (ev.event === "image_generation.partial_image") handlers.onPartial?.(data);
    else if (ev.event === "image_generation.completed") {
      completed++;
      handlers.onCompleted?.(data);
    } else if (ev.event === "error") {
      const e = data.error ?? {};
      throw new ApiError(`${e.message ?? "The generation failed"}`, 0, e.code ?? null);
    }
  }
  if (completed === 0) throw new ApiError("The server ended the stream without an image", 0, null);
}
