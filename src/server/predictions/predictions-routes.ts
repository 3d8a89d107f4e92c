import type { FastifyInstance, FastifyRequest } from "fastify";
import { QueueFullError } from "../../errors/omni-error.js";
import type { Clock } from "../../utils/clock.js";
import type { ServerContext } from "../app/server-context.js";
import { PUBLIC_ROUTE } from "../app/public-route.js";
import { predictionError } from "./prediction-errors.js";
import { cancelAfterMs, preferWaitMs } from "./prediction-headers.js";
import { isRandomId, randomId } from "./prediction-ids.js";
import { createPredictionSchema, planRequest, servedIdOf, type CreatePredictionBody } from "./prediction-input.js";
import type { PredictionRecord } from "./prediction-record.js";
import type { PredictionRunner } from "./prediction-runner.js";
import type { PredictionStoreApi } from "./prediction-store-api.js";
import { streamPrediction } from "./prediction-stream.js";
import type { WebhookDispatcher } from "./webhook-types.js";

/** Predictions per page of `GET /v1/predictions` (Replicate's page size). */
export const PAGE_SIZE = 100;

/** What the routes work with: the app's context, the store, the runner, and how a prediction is shown. */
export interface PredictionRouteDeps {
  ctx: ServerContext;
  store: PredictionStoreApi;
  runner: PredictionRunner;
  clock: Clock;
  webhooks: WebhookDispatcher | null;
  /** The server's public URL, without a trailing slash. */
  base: () => string;
  render: (rec: PredictionRecord) => Record<string, unknown>;
  bodyLimit: number;
}

const notFound = (id: string) => predictionError(404, `No prediction '${id}': it never existed, or it was deleted after --job-ttl.`, "id", "not_found");

/** `owner/name` of the served model, as predictions name it. */
export function canonicalModel(id: string): string {
  return id.includes("/") ? id : `omni-diffusion/${id}`;
}

/** Replicate's prediction routes over the runner and the store. */
export function registerPredictionRoutes(app: FastifyInstance, d: PredictionRouteDeps): void {
  const { ctx, store, runner } = d;
  const get = async (id: string): Promise<PredictionRecord> => {
    const rec = isRandomId(id) ? await store.get(id) : null;
    if (!rec) throw notFound(id);
    return rec;
  };

  const create = async (body: CreatePredictionBody, headers: Record<string, string | string[] | undefined>, status: (code: number) => void, servedId: string) => {
    const refusal = ctx.refusal();
    if (refusal) throw refusal;
    const waitMs = preferWaitMs(headers.prefer);
    const cancelMs = cancelAfterMs(headers["cancel-after"]);
    if (body.webhook) {
      if (!d.webhooks) throw predictionError(422, "webhooks are not configured on this server: leave out webhook, or start serve with webhooks", "webhook");
      await d.webhooks.checkUrl(body.webhook).catch((err: unknown) => {
        throw predictionError(422, err instanceof Error ? err.message : String(err), "webhook");
      });
    }
    // Refuses bad input now, not when it runs; the record's version is the model id it runs on (issue 24).
    await planRequest(body.input, ctx.config.limits, ctx.model, undefined, ctx.model.models.requestModel(servedId));
    const max = ctx.engine.config.limits.maxQueue;
    if ((await runner.pendingCount()) >= max) throw new QueueFullError(`too many predictions waiting (${max}, --max-queue); retry later`);
    const now = d.clock.now();
    const rec = await runner.create({
      id: randomId(),
      token: randomId(),
      model: canonicalModel(servedId),
      version: servedId,
      input: body.input as Record<string, unknown>,
      createdAt: now,
      deadline: cancelMs === null ? null : now + cancelMs,
      webhook: body.webhook ?? null,
      webhookEventsFilter: body.webhook_events_filter ?? null,
    }, { previews: body.stream === true });
    if (waitMs > 0) await runner.waitFinal(rec.id, waitMs);
    status(201);
    return d.render((await store.get(rec.id)) ?? rec);
  };

  const bodyOpts = { schema: { body: createPredictionSchema }, bodyLimit: d.bodyLimit };
  app.post("/v1/predictions", bodyOpts, async (req, reply) => {
    const body = req.body as CreatePredictionBody;
    const ref = body.version ?? body.model;
    const ids = ctx.model.models.ids;
    const servedId = ref == null ? ctx.model.models.defaultId : servedIdOf(ref, ids);
    if (servedId === null) {
      throw predictionError(422, `${body.version != null ? "version" : "model"} '${ref}' does not name a served model (${ids.map(canonicalModel).join(", ")})`, body.version != null ? "version" : "model");
    }
    return create(body, req.headers, (c) => reply.code(c), servedId);
  });

  app.post<{ Params: { owner: string; name: string } }>("/v1/models/:owner/:name/predictions", bodyOpts, async (req, reply) => {
    const { owner, name } = req.params;
    const servedId = servedIdOf(`${owner}/${name}`, ctx.model.models.ids);
    if (servedId === null) {
      throw predictionError(404, `Model '${owner}/${name}' not found: this server serves ${ctx.model.models.ids.map((id) => `'${canonicalModel(id)}'`).join(", ")}`, "model", "model_not_found");
    }
    return create(req.body as CreatePredictionBody, req.headers, (c) => reply.code(c), servedId);
  });

  app.get<{ Params: { id: string } }>("/v1/predictions/:id", async (req) => d.render(await get(req.params.id)));

  // The official client posts the cancel with `Content-Type: application/json` and no body, which Replicate accepts.
  const emptyBodyOk = { onRequest: async (req: FastifyRequest) => void (req.headers["content-length"] === "0" && delete req.headers["content-type"]) };
  app.post<{ Params: { id: string } }>("/v1/predictions/:id/cancel", emptyBodyOk, async (req) => {
    const rec = await get(req.params.id);
    return d.render((await runner.cancel(req.params.id)) ?? rec);
  });

  app.get<{ Querystring: { cursor?: string } }>("/v1/predictions", async (req) => {
    let before: number | null = null;
    if (req.query.cursor !== undefined) {
      before = Number(Buffer.from(req.query.cursor, "base64url").toString());
      if (!Number.isSafeInteger(before) || before < 1) throw predictionError(400, `cursor '${req.query.cursor}' is not a cursor this server handed out`, "cursor");
    }
    const page = await store.page(PAGE_SIZE, before);
    const next = page.nextBefore === null ? null : `${d.base()}/v1/predictions?cursor=${Buffer.from(String(page.nextBefore)).toString("base64url")}`;
    return { previous: null, next, results: page.results.map(d.render) };
  });

  // Capability URLs (the token): the official client fetches streams and files without the API key.
  const capability = async (id: string, token: string): Promise<PredictionRecord> => {
    const rec = isRandomId(id) ? await store.get(id) : null;
    if (!rec || rec.token !== token) throw notFound(id);
    return rec;
  };

  app.get<{ Params: { id: string; token: string } }>("/v1/predictions/:id/stream/:token", { config: PUBLIC_ROUTE }, async (req, reply) => {
    streamPrediction(reply, await capability(req.params.id, req.params.token), runner.events, d.base());
  });

  app.get<{ Params: { id: string; token: string; name: string } }>("/v1/predictions/:id/files/:token/:name", { config: PUBLIC_ROUTE }, async (req, reply) => {
    const rec = await capability(req.params.id, req.params.token);
    const name = req.params.name;
    const png = rec.output?.includes(name) ? await store.files.read(rec.id, name) : null;
    if (!png) throw predictionError(404, `No file '${name}' in prediction '${rec.id}'`, "name", "file_not_found");
    return reply.type("image/png").header("cache-control", "private, max-age=3600").send(png);
  });
}
