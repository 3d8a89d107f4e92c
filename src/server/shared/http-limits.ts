import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { z } from "zod";
import { limitConnectionsPerAddress } from "./connection-share.js";
import { DEFAULT_MAX_JSON_DEPTH } from "./safe-json.js";

/**
 * Connection limits of every HTTP server (serve, the worker's HTTP and SageMaker ports), so a slow or
 * greedy client cannot hold sockets forever. Each field is also a CLI flag (`docs/server.md`).
 */
export const httpLimitsSchema = z
  .object({
    /** The request line and headers must arrive within this, ms (else 408 and the socket is closed). */
    headersTimeoutMs: z.number().int().min(50).default(10_000),
    /**
     * The whole request, headers and body, must arrive within this, ms (else 408 and the socket is closed):
     * the body timeout. A response may take longer: only receiving the request is bounded.
     */
    requestTimeoutMs: z.number().int().min(50).default(30_000),
    /** An idle keep-alive connection is closed after this, ms. */
    keepAliveTimeoutMs: z.number().int().min(50).default(5_000),
    /** Most open connections; more are closed as soon as they are accepted. */
    maxConnections: z.number().int().min(1).default(1_024),
    /**
     * Most open connections from one client address (default: a quarter of `maxConnections`), so one client
     * cannot hold them all; more are closed as soon as they are accepted. Raise it behind a proxy, whose
     * address every client shares.
     */
    maxConnectionsPerAddress: z.number().int().min(1).optional(),
    /** Deepest nesting of arrays/objects in a JSON body (deeper: 400). */
    maxJsonDepth: z.number().int().min(2).max(1_000).default(DEFAULT_MAX_JSON_DEPTH),
  })
  .strict()
  .refine((l) => l.headersTimeoutMs <= l.requestTimeoutMs, { message: "headersTimeoutMs must not exceed requestTimeoutMs", path: ["headersTimeoutMs"] });

/** Connection limits with every field filled in. */
export type HttpLimits = z.output<typeof httpLimitsSchema>;
/** Connection limits as given (each field optional). */
export type HttpLimitsInput = z.input<typeof httpLimitsSchema>;

/** The defaults of {@link httpLimitsSchema}. */
export const DEFAULT_HTTP_LIMITS: HttpLimits = httpLimitsSchema.parse({});

/** Connections one address may hold: the configured share, else a quarter of `maxConnections`. */
export function perAddressLimit(limits: HttpLimits): number {
  return limits.maxConnectionsPerAddress ?? Math.max(1, Math.ceil(limits.maxConnections / 4));
}

/**
 * A fastify `serverFactory` building a Node HTTP server with `limits` applied. Node checks the header and
 * request deadlines every `connectionsCheckingInterval` (30 s by default, longer than short timeouts), so
 * the interval follows the shortest deadline.
 */
export function hardenedServerFactory(limits: HttpLimits) {
  return (handler: (req: IncomingMessage, res: ServerResponse) => void): Server => {
    const shortest = Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs);
    const server = createServer(
      {
        headersTimeout: limits.headersTimeoutMs,
        requestTimeout: limits.requestTimeoutMs,
        connectionsCheckingInterval: Math.max(20, Math.min(1_000, Math.floor(shortest / 4))),
      },
      handler,
    );
    server.keepAliveTimeout = limits.keepAliveTimeoutMs;
    server.maxConnections = limits.maxConnections;
    limitConnectionsPerAddress(server, perAddressLimit(limits));
    return server;
  };
}
