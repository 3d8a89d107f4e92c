import type { FastifyServerOptions } from "fastify";
import { z } from "zod";
import type { DiffusionEngine } from "../../engine/engine.js";
import type { OmniDiffusionConfigInput } from "../../core/config.js";
import { ConfigError } from "../../errors/omni-error.js";
import { DEFAULT_HTTP_LIMITS, httpLimitsSchema } from "../shared/http-limits.js";
import { zodToConfigError } from "../../utils/zod-error.js";

/** What one request may ask for. Requests beyond a limit get a 400 naming the field and the limit. */
export const serverLimitsSchema = z
  .object({
    /** Images per request (`n`); the OpenAI API allows at most 10. */
    maxN: z.number().int().min(1).max(10).default(10),
    /** Largest image side; absent: derived from the model (core/limits.ts `maxSizeFor`). */
    maxWidth: z.number().int().min(8).optional(),
    maxHeight: z.number().int().min(8).optional(),
    /** `num_inference_steps`. */
    maxSteps: z.number().int().min(1).default(150),
    /** Characters of `prompt` and of `negative_prompt`. */
    maxPromptChars: z.number().int().min(1).max(10_000).default(10_000),
    /** Request body size; larger bodies get a 413. */
    maxBodyBytes: z.number().int().min(1_024).default(1_048_576),
    /**
     * Bodies that carry images (`POST /v1/images/edits` multipart, the A1111 `img2img` JSON with base64
     * images): each uploaded file, and the whole A1111 body, may be this large; larger get a 413.
     */
    maxUploadBytes: z.number().int().min(1_024).default(16 * 1_048_576),
  })
  .strict();

/** `scheme://host[:port]` with nothing after it (what a browser sends in `Origin`), or `*`. */
function isOrigin(v: string): boolean {
  if (v === "*") return true;
  try {
    const u = new URL(v);
    return (u.protocol === "http:" || u.protocol === "https:") && u.origin === v.replace(/\/+$/, "").toLowerCase();
  } catch {
    return false;
  }
}

/** Per-request limits, every field filled in. */
export type ServerLimits = z.output<typeof serverLimitsSchema>;

/** The data part of {@link ServerOptions}: validated with zod, so a bad value fails with a ConfigError naming it. */
export const serverConfigSchema = z
  .object({
    host: z.string().min(1).default("127.0.0.1"),
    /** 0 picks a free port. */
    port: z.number().int().min(0).max(65_535).default(8000),
    /**
     * Required on every route but `/health`, as `Authorization: Bearer <key>` or as the password of HTTP Basic
     * auth (any user name); null or absent: no auth.
     */
    apiKey: z.string().min(1).refine((k) => k.trim() !== "", "must not be blank (surrounding whitespace is not part of a key)").nullish(),
    /** The id `/v1/models` lists and requests' `model` must match; defaults to the model folder's name. */
    servedModelName: z.string().min(1).optional(),
    limits: serverLimitsSchema.default(serverLimitsSchema.parse({})),
    /** How long a graceful close lets in-flight requests finish before aborting them, ms. */
    shutdownTimeoutMs: z.number().int().min(0).default(30_000),
    /** Deadline of the executor round trip behind `GET /health`, ms. */
    healthTimeoutMs: z.number().int().min(1).default(5_000),
    /** How long an image fetched through `response_format: "url"` stays downloadable, ms (OpenAI: 60 min). */
    imageTtlMs: z.number().int().min(1_000).default(3_600_000),
    /** Memory budget of the stored `url` images; the oldest are dropped first when it is exceeded. */
    imageStoreMaxBytes: z.number().int().min(1_024).default(256 * 1024 * 1024),
    /**
     * Base of the image URLs handed out (`https://images.example.com`). Default: none, and the URLs are
     * relative (`/v1/images/files/<id>`): a URL is never built from the request's Host header, which the
     * client controls.
     */
    publicBaseUrl: z.url().optional(),
    /** Timeouts, connection cap and JSON depth of the listening server. */
    http: httpLimitsSchema.default(DEFAULT_HTTP_LIMITS),
    /** Register prom-client's default process metrics (CPU, memory, event loop) too. */
    defaultMetrics: z.boolean().default(true),
    /** Serve the web playground at `/` (src/server/ui/); `serve --no-ui` turns it off. */
    ui: z.boolean().default(true),
    /** Serve the AUTOMATIC1111-compatible `/sdapi/v1/*` routes (src/server/a1111/); `serve --no-a1111` turns them off. */
    a1111: z.boolean().default(true),
    /**
     * A1111 `progress` and `interrupt` see every client's calls (A1111's own behaviour, one job for everyone)
     * instead of only the caller's (same credentials and client address); `serve --a1111-shared-progress`.
     */
    a1111SharedJobs: z.boolean().default(false),
    /** Serve Replicate's predictions API (`/v1/predictions`, src/server/predictions/); `serve --no-predictions` turns it off. */
    predictions: z.boolean().default(true),
    /**
     * Where predictions, their events and images are kept (SQLite plus PNG files; `serve --data-dir`), locked
     * against a second server. Absent: in memory, gone when the server stops (what `startServer()` does unless
     * told otherwise; `serve` always gives one).
     */
    dataDir: z.string().min(1).optional(),
    /** The LoRA folder (`serve --loras-dir`): listed by `/v1/loras` and `/sdapi/v1/loras` (pipelines/lora/lora-catalog.ts). */
    lorasDir: z.string().min(1).optional(),
    /**
     * The predictions API's webhook signing secret, `whsec_` + base64 (`serve --webhook-secret`, env
     * OMNI_DIFFUSION_WEBHOOK_SECRET). Absent: the one kept in the data dir, else a new one, logged once.
     */
    webhookSecret: z.string().min(1).optional(),
    /** Deliver webhooks to loopback, private and link-local addresses (`serve --allow-private-webhooks`); off: an SSRF guard. */
    allowPrivateWebhooks: z.boolean().default(false),
    /** Completed predictions older than this are deleted with their files, ms (`serve --job-ttl`; default 24 h). */
    jobTtlMs: z.number().int().min(1_000).default(24 * 3_600_000),
    /**
     * Origins whose pages may call the API across sites (`serve --cors-origin`): each `scheme://host[:port]`,
     * or `*` for any (only with an `apiKey`). They get CORS headers; POSTs from any other site's page are a 403.
     */
    corsOrigins: z.array(z.string().refine(isOrigin, { message: "must be an origin such as https://app.example.com (scheme, host and port; no path), or *" })).default([]),
    /**
     * Host names a server without an API key answers besides IP addresses, `localhost` and the bound host
     * (`serve --allowed-host`): a name, `.example.com` for it and its subdomains, or `*` for any.
     */
    allowedHosts: z.array(z.string().regex(/^(\*|\.?[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?)$/, "must be a host name, .domain for it and its subdomains, or *")).default([]),
  })
  .strict()
  .refine((c) => !c.corsOrigins.includes("*") || !!c.apiKey, {
    message: "corsOrigins '*' needs an apiKey: without one, any web page a user opens could run generations on this server",
    path: ["corsOrigins"],
  });

/** The validated data options of a server, defaults applied. */
export type ServerConfig = z.output<typeof serverConfigSchema>;

/**
 * Options of {@link startServer}. The executor is the operator's choice only: it comes from
 * `engineConfig` (or a ready `engine`), never from a request.
 */
export interface ServerOptions extends z.input<typeof serverConfigSchema> {
  /** An engine the caller owns: the server uses it and leaves it open on close. */
  engine?: DiffusionEngine;
  /** Config of the engine the server creates and owns (closed on close). Ignored when `engine` is given. */
  engineConfig?: OmniDiffusionConfigInput;
  /** fastify's pino logger options (`true`: info to stdout; `false`: silent). Default: info to stdout. */
  logger?: FastifyServerOptions["logger"];
}

/** Validates the data options; throws one ConfigError listing each bad field. */
export function parseServerConfig(opts: ServerOptions): ServerConfig {
  const { engine: _engine, engineConfig: _engineConfig, logger: _logger, ...data } = opts;
  const r = serverConfigSchema.safeParse(data);
  if (!r.success) throw zodToConfigError(r.error, "server options");
  return r.data;
}
