import type { FastifyRequest } from "fastify";

/**
 * Route config flag of routes that answer without the API key: the playground's page and scripts hold no
 * secrets and must load before the user typed a key. Everything the page then fetches is authorized as usual.
 * The flag lives in the app because the app's auth hook reads it, whichever plugin declared the route.
 */
export const PUBLIC_ROUTE = { public: true } as const;

declare module "fastify" {
  // Declared so route `config` stays typed once a plugin (@fastify/multipart) adds keys of its own.
  interface FastifyContextConfig {
    public?: boolean;
  }
}

/** True for a route registered with {@link PUBLIC_ROUTE}. */
export function isPublicRoute(req: FastifyRequest): boolean {
  return (req.routeOptions.config as { public?: unknown } | undefined)?.public === true;
}
