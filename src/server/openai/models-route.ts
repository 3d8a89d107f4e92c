import type { FastifyPluginAsync } from "fastify";
import { requestError } from "../app/error-mapping.js";
import type { ServedModel } from "../app/served-models.js";
import type { ServerContext } from "../app/server-context.js";

/**
 * `GET /v1/models` and `GET /v1/models/:model`: every model this server serves, loaded or not, as OpenAI lists
 * models, with our extensions: its layout (`_class_name`), weights size, whether it is loaded and the default.
 */
export const modelRoutes: FastifyPluginAsync<{ ctx: ServerContext }> = async (app, { ctx }) => {
  const card = (m: ServedModel) => ({
    id: m.id,
    object: "model",
    created: ctx.model.created,
    owned_by: "omni-diffusion",
    layout: m.className,
    size_bytes: m.weightBytes,
    loaded: m.loaded,
    default: m.isDefault,
  });
  app.get("/v1/models", async () => ({ object: "list", data: (await ctx.model.models.list()).map(card) }));
  app.get<{ Params: { model: string } }>("/v1/models/:model", async (req) => {
    const { model } = req.params;
    const found = (await ctx.model.models.list()).find((m) => m.id === model || m.name === model);
    if (!found) throw requestError(404, `The model '${model}' does not exist; this server serves: ${ctx.model.models.ids.join(", ")}.`, "model", "model_not_found");
    return card(found);
  });
};
