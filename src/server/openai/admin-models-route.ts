import type { FastifyPluginAsync } from "fastify";
import { PermissionError, serializeError, toOmniError, type SerializedError } from "../../errors/omni-error.js";
import type { ServerContext } from "../app/server-context.js";

/** Where one model's last admin load or unload stands. */
interface AdminJob {
  model: string;
  action: "load" | "unload";
  state: "running" | "done" | "failed";
  startedAt: number;
  finishedAt: number | null;
  error: SerializedError | null;
}

/**
 * The admin routes of the model cache (issue 24), behind the API key (refused outright on a server without one:
 * loading models is an operator's act): `POST /v1/admin/models/:model/load` and `.../unload` start the work on
 * every worker and answer 202 at once; `GET /v1/admin/models/:model` is the progress to poll (running, done,
 * failed with the error), with whether the model is loaded now.
 */
export const adminModelRoutes: FastifyPluginAsync<{ ctx: ServerContext }> = async (app, { ctx }) => {
  const served = ctx.model.models;
  const jobs = new Map<string, AdminJob>();
  app.addHook("onRequest", async () => {
    if (!ctx.config.apiKey) throw new PermissionError("the admin routes need the server to run with --api-key", { statusCode: 403 });
  });
  const start = (id: string, action: AdminJob["action"]) => {
    served.requestModel(id); // 404 naming it before any work starts
    const job: AdminJob = { model: id, action, state: "running", startedAt: Date.now(), finishedAt: null, error: null };
    jobs.set(id, job);
    (action === "load" ? served.load(id) : served.unload(id)).then(
      () => Object.assign(job, { state: "done", finishedAt: Date.now() }),
      (err: unknown) => Object.assign(job, { state: "failed", finishedAt: Date.now(), error: serializeError(toOmniError(err)) }),
    );
    return job;
  };
  app.post<{ Params: { model: string } }>("/v1/admin/models/:model/load", async (req, reply) => reply.code(202).send(start(req.params.model, "load")));
  app.post<{ Params: { model: string } }>("/v1/admin/models/:model/unload", async (req, reply) => reply.code(202).send(start(req.params.model, "unload")));
  app.get<{ Params: { model: string } }>("/v1/admin/models/:model", async (req) => {
    const id = req.params.model;
    served.requestModel(id);
    const listed = (await served.list()).find((m) => m.id === id || m.name === id);
    return { model: id, loaded: listed?.loaded ?? null, job: jobs.get(id) ?? null };
  });
};
