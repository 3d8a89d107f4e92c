import type { FastifyPluginAsync } from "fastify";
import type { ServerContext } from "../app/server-context.js";
import { loraCatalogOf } from "../shared/lora-catalogs.js";

/**
 * `GET /v1/loras`: the LoRAs of `--loras-dir` in OpenAI's list shape (rescanned on each call: a file dropped in
 * shows up). Requests name them in `loras: [{ name, scale }]` (or A1111 `<lora:name:weight>` prompt tags).
 */
export const loraRoutes: FastifyPluginAsync<{ ctx: ServerContext }> = async (app, { ctx }) => {
  app.get("/v1/loras", async () => {
    const catalog = loraCatalogOf(ctx.config.lorasDir);
    const entries = catalog ? catalog.rescan() : [];
    return { object: "list", data: entries.map((e) => ({ id: e.name, object: "lora", bytes: e.bytes, owned_by: "omni-diffusion" })) };
  });
};
