import type { FastifyPluginAsync } from "fastify";
import { requestError } from "../app/error-mapping.js";
import type { ServerContext } from "../app/server-context.js";

/** `GET /v1/models` and `GET /v1/models/:model`: the one model this server serves, as OpenAI lists models. */
export const modelRoutes: FastifyPluginAsync<{ ctx: ServerContext }> = async (app, { ctx }) => {
  const card = () => ({
    id: ctx.model.id,
    object: "model",
    created: ctx.model.created,
    owned_by: "omni-diffusion",
  });
  app.get("/v1/models", async () => ({ object: "list", data: [card()] }));
  app.get<{ Params: { model: string } }>("/v1/models/:model", async (req) => {
    const { model } = req.params;
    if (model !== ctx.model.id) throw requestError(404, `The model '${model}' does not exist; this server serves '${ctx.model.id}'.`, "model", "model_not_found");
    return card();
  });
};
