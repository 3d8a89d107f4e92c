import { z } from "zod";
import { ConfigError } from "../../errors/omni-error.js";
import { DEFAULT_REFUSED_TIMEOUT_MS } from "../../policies/remote-policy.js";
import { zodToConfigError } from "../../utils/zod-error.js";

const endpointList = z
  .union([z.string().min(1), z.array(z.string().min(1)).min(1).max(64)])
  .transform((v) => (Array.isArray(v) ? v : v.split(",").map((s) => s.trim()).filter(Boolean)));

/**
 * `executorOptions` every remote executor accepts (the same names everywhere). Timeouts are the total
 * budget of one call (every attempt and backoff); the engine's `rpcTimeoutMs` applies when `timeoutMs` is
 * absent, and the smaller of the two when both are set.
 */
export const remoteOptionsSchema = z.object({
  /** Base URLs (`http://host:port`) or `host:port`; a string may list several, comma-separated. */
  endpoints: endpointList.optional(),
  /** Sent as `Authorization: Bearer <apiKey>` (HTTP, OpenAI) or `authorization` metadata (gRPC). */
  apiKey: z.string().min(1).optional(),
  /** Total budget of one call, ms. */
  timeoutMs: z.number().int().min(1).optional(),
  /** Retries after the first attempt, on retryable errors only. */
  retries: z.number().int().min(0).max(20).default(3),
  backoffInitialMs: z.number().int().min(0).default(50),
  backoffMaxMs: z.number().int().min(0).default(2_000),
  /** Consecutive endpoint failures that open its circuit. */
  breakerThreshold: z.number().int().min(1).default(3),
  /** How long an open circuit waits before a half-open probe, ms. */
  halfOpenAfterMs: z.number().int().min(1).default(2_000),
  /** Deadline of one health round trip, ms. */
  healthTimeoutMs: z.number().int().min(1).default(5_000),
  /** How long a call (and `init`) keeps retrying while every endpoint refuses connections, ms; then it fails naming them. */
  refusedTimeoutMs: z.number().int().min(0).default(DEFAULT_REFUSED_TIMEOUT_MS),
});

export type RemoteOptions = z.output<typeof remoteOptionsSchema>;

/** Where `omni-diffusion worker` and `serve` read their API key when `--api-key` is not given. */
export const API_KEY_ENV = "OMNI_DIFFUSION_API_KEY";

/**
 * {@link remoteOptionsSchema} for the executors that call `omni-diffusion worker` (http, grpc): without an
 * `apiKey` they send the key in {@link API_KEY_ENV}, so one variable serves the worker and its clients. The
 * `openai` executor keeps the plain schema: its servers (OpenAI, vLLM-Omni) are not ours to send that key to.
 */
export const workerRemoteOptionsSchema = remoteOptionsSchema.extend({
  apiKey: z
    .string()
    .min(1)
    .optional()
    .transform((key) => key ?? (process.env[API_KEY_ENV] || undefined)),
});

/**
 * Validates `executorOptions` against a remote executor's schema (the shared one, or an extension of it);
 * unknown keys are rejected so a typo does not silently fall back to a default.
 */
export function parseRemoteOptions<S extends z.ZodObject>(schema: S, raw: Record<string, unknown>, executor: string): z.output<S> {
  const r = schema.strict().safeParse(raw);
  if (!r.success) throw zodToConfigError(r.error, `executorOptions for ${executor}`, (p) => `executorOptions.${p || "(root)"}`);
  return r.data as z.output<S>;
}

/** `host:port`, `http://host:port/` or `https://...` → `http(s)://host:port` (no trailing slash). */
export function httpBaseUrl(endpoint: string): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(endpoint) ? endpoint : `http://${endpoint}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch (err) {
    throw new ConfigError(`executorOptions.endpoints: "${endpoint}" is not a URL or host:port`, { field: "executorOptions.endpoints", cause: err });
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new ConfigError(`executorOptions.endpoints: "${endpoint}" must be http(s):// or host:port`, { field: "executorOptions.endpoints" });
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
}

/** `host:port`, `grpc://host:port` or `http://host:port` → `host:port` (what grpc-js dials). */
export function hostPort(endpoint: string): string {
  const m = /^(?:[a-z][a-z0-9+.-]*:\/\/)?([^/]+?)\/?$/i.exec(endpoint.trim());
  if (!m || !/:\d+$/.test(m[1]!)) {
    throw new ConfigError(`executorOptions.endpoints: "${endpoint}" must be host:port (or grpc://host:port)`, { field: "executorOptions.endpoints" });
  }
  return m[1]!;
}

/** The endpoints option, required for transports that cannot guess one. */
export function requireEndpoints(endpoints: string[] | undefined, executor: string): string[] {
  if (!endpoints?.length) {
    throw new ConfigError(`${executor} needs executorOptions.endpoints (a list of base URLs or host:port)`, { field: "executorOptions.endpoints" });
  }
  return endpoints;
}
