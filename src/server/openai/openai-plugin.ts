import type { FastifyPluginAsync } from "fastify";
import type { ServerContext } from "../app/server-context.js";
import { editRoutes } from "./edits-route.js";
import { imageRoutes } from "./images-route.js";
import { loraRoutes } from "./loras-route.js";
import { modelRoutes } from "./models-route.js";
import { adminModelRoutes } from "./admin-models-route.js";

/**
 * The OpenAI images API: `POST /v1/images/generations` (JSON or SSE), `POST /v1/images/edits` (multipart,
 * JSON or SSE) and `GET /v1/models[/:model]`. Each route group stays its own plugin, so the multipart
 * parser of edits stays inside edits.
 */
export const openaiRoutes: FastifyPluginAsync<{ ctx: ServerContext }> = async (app, { ctx }) => {
  await app.register(imageRoutes, { ctx });
  await app.register(editRoutes, { ctx });
  await app.register(modelRoutes, { ctx });
  await app.register(loraRoutes, { ctx });
  await app.register(adminModelRoutes, { ctx });
};
