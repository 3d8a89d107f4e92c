import type { FastifyPluginAsync } from "fastify";
import type { ServerConfig } from "./server-options.js";
import type { ServerContext } from "./server-context.js";

/**
 * One API dialect of the server (OpenAI, A1111, the playground, ...): an encapsulated fastify plugin that
 * gets the {@link ServerContext} and inherits the app's hooks (auth, site guard, metrics, draining), its
 * zod validator and its error handler (a plugin may set its own, as A1111 does for its error shape).
 * A dialect imports only `server/app/` and `server/shared/`, never another dialect.
 */
export interface ServerPlugin {
  /** Short name, for logs. */
  readonly name: string;
  /** Whether this server serves the dialect (a `serve --no-…` flag); absent: always. */
  readonly enabled?: (config: ServerConfig) => boolean;
  readonly plugin: FastifyPluginAsync<{ ctx: ServerContext }>;
}
