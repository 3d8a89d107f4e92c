import type { FastifyInstance } from "fastify";
import type { ServerContext } from "../app/server-context.js";
import { useZodValidator } from "../shared/zod-validator.js";
import { A1111Options, optionsPatchSchema, optionsSchemaError, type OptionsPatch } from "./a1111-options.js";
import { A1111_SCHEDULES, a1111SamplerList } from "./a1111-samplers.js";
import { a1111Loras } from "./a1111-loras.js";
import { loraCatalogOf } from "../shared/lora-catalogs.js";

/**
 * The read-only catalogue routes of `/sdapi/v1` that clients call at start-up (model, sampler, scheduler,
 * upscaler, VAE and LoRA lists) and `options`. Lists of things this server does not have are empty, never a
 * 404, so a client's settings page loads. `POST options` accepts the options object back (Open WebUI posts
 * what it read, with `sd_model_checkpoint` changed), known keys and types only ({@link A1111Options}); naming
 * a checkpoint other than the one served is a 400, as A1111 refuses a model it does not have.
 */
export function registerCatalog(app: FastifyInstance, ctx: ServerContext): void {
  const id = ctx.model.id;
  const served = ctx.model.models;
  const options = new A1111Options(id, served);
  app.get("/sdapi/v1/options", async () => options.get());
  // Its own scope: the options body fails in its own words (unknown keys are a 400, not a 422).
  void app.register(async (scope) => {
    useZodValidator(scope, optionsSchemaError);
    scope.post<{ Body: OptionsPatch }>("/sdapi/v1/options", { schema: { body: optionsPatchSchema } }, async (req) => {
      options.set(req.body);
      return null;
    });
  });
  // Every model the server knows, loaded or not (issue 24).
  app.get("/sdapi/v1/sd-models", async () => (await served.list()).map((m) => ({ title: m.id, model_name: m.id, hash: null, sha256: null, filename: m.dir, config: null })));
  app.get("/sdapi/v1/samplers", async () => a1111SamplerList(ctx.model.limits));
  app.get("/sdapi/v1/schedulers", async () => A1111_SCHEDULES.map((s) => ({ name: s.name, label: s.label, aliases: null, default_rho: -1, need_inner_model: false })));
  app.get("/sdapi/v1/upscalers", async () => [{ name: "None", model_name: null, model_path: null, model_url: null, scale: 4 }]);
  app.get("/sdapi/v1/latent-upscale-modes", async () => []);
  app.get("/sdapi/v1/sd-vae", async () => []);
  app.get("/sdapi/v1/sd-modules", async () => []);
  app.get("/sdapi/v1/loras", async () => a1111Loras(ctx));
  app.post("/sdapi/v1/refresh-loras", async () => {
    loraCatalogOf(ctx.config.lorasDir)?.rescan();
    return null;
  });
  app.get("/sdapi/v1/hypernetworks", async () => []);
  app.get("/sdapi/v1/face-restorers", async () => []);
  app.get("/sdapi/v1/realesrgan-models", async () => []);
  app.get("/sdapi/v1/prompt-styles", async () => []);
  app.get("/sdapi/v1/embeddings", async () => ({ loaded: {}, skipped: {} }));
  app.get("/sdapi/v1/scripts", async () => ({ txt2img: [], img2img: [] }));
  app.get("/sdapi/v1/script-info", async () => []);
  app.get("/sdapi/v1/extensions", async () => []);
  app.get("/sdapi/v1/cmd-flags", async () => ({ api: true, nowebui: true }));
  // No VAE list to refresh (refresh-loras rescans --loras-dir: a1111-loras.ts).
  app.post("/sdapi/v1/refresh-vae", async () => null);
  // A rescan of --models-dir; unloading and reloading the current default checkpoint on every worker, as A1111 does.
  app.post("/sdapi/v1/refresh-checkpoints", async () => {
    await served.refresh();
    return null;
  });
  app.post("/sdapi/v1/unload-checkpoint", async () => {
    await served.unload();
    return null;
  });
  app.post("/sdapi/v1/reload-checkpoint", async () => {
    await served.load();
    return null;
  });
}
