import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";
import type { GeneratedImage } from "../../core/output.js";
import { OmniDiffusionRequest } from "../../core/request.js";
import { AbortedError, ValidationError, toOmniError } from "../../errors/omni-error.js";
import { pngOf } from "../../utils/png.js";
import { Generation, logAbort } from "../app/generation-flow.js";
import { stepsRun } from "../shared/edit-images.js";
import { toHttpError } from "../app/error-mapping.js";
import type { ServerContext } from "../app/server-context.js";
import { useZodValidator } from "../shared/zod-validator.js";
import { registerCatalog } from "./a1111-catalog.js";
import { A1111Job, A1111Jobs, idleProgress, jobOwner } from "./a1111-jobs.js";
import { a1111CallSchema, a1111SchemaError, planA1111, type A1111Body, type A1111Plan } from "./a1111-request.js";
import { a1111Info, a1111Parameters } from "./a1111-response.js";

// pngOf: an image that came from a remote peer as PNG goes out as those bytes (no decode, no second encode).
const b64 = (img: GeneratedImage) => pngOf(img).toString("base64");

/** A client's task id (`id_task`), or null for none or a value that is not one. */
function taskIdOf(v: unknown): string | null {
  return typeof v === "string" && v.length > 0 && v.length <= 256 ? v : null;
}

/** Live previews per job: about ten, as A1111's default `show_progress_every_n_steps` gives at 100 steps. */
function previewEvery(steps: number | null): number {
  return Math.max(1, Math.ceil((steps ?? 20) / 10));
}

/**
 * The AUTOMATIC1111-compatible API (`/sdapi/v1/*`), shaped as A1111's `modules/api/api.py` answers, for the
 * clients that speak it (SillyTavern, Open WebUI, LibreChat, ...): `txt2img`, `img2img`, `progress`,
 * `interrupt`, `options` and the catalogue routes. Errors use A1111's shapes: a known field of the wrong type
 * is FastAPI's 422 `{detail: [{loc, msg, type}]}`; anything else `{error, detail, body, errors}` with its
 * status. Auth is the server's API key, as Bearer or as the password of HTTP Basic auth (`--api-auth`).
 */
export const a1111Routes: FastifyPluginAsync<{ ctx: ServerContext }> = async (app, { ctx }) => {
  const jobs = new A1111Jobs(ctx.config.a1111SharedJobs);
  const ownerOf = (req: FastifyRequest) => jobOwner(req.headers.authorization, req.ip);

  // Route schemas fail in FastAPI's 422 shape, answered by the error handler below.
  useZodValidator(app, a1111SchemaError);
  app.setErrorHandler((err, req, reply) => {
    const detail = err instanceof ValidationError ? err.data.a1111Detail : undefined;
    if (Array.isArray(detail)) return reply.code(422).send({ detail });
    // The txt2img/img2img bodies are bounded by the upload limit, which a 413's message names.
    const { statusCode, body } = toHttpError(err, { maxBodyBytes: ctx.config.limits.maxUploadBytes }, req.id);
    if (statusCode >= 500) req.log.error({ err, requestId: req.id }, "A1111 request failed");
    else req.log.info({ status: statusCode, param: body.error.param }, body.error.message);
    if (statusCode === 401) reply.header("www-authenticate", 'Basic realm="omni-diffusion"').header("connection", "close");
    const name = err instanceof Error ? err.name : "Error";
    return reply.code(statusCode).send({ error: name, detail: body.error.message, body: "", errors: body.error.message });
  });

  registerCatalog(app, ctx);

  app.get<{ Querystring: { skip_current_image?: string; id_task?: string } }>("/sdapi/v1/progress", async (req) => {
    const job = jobs.current(ownerOf(req), taskIdOf(req.query.id_task));
    if (!job) return idleProgress();
    // FastAPI reads a bool query parameter from true/1/yes/on in any case.
    return job.progress(!/^(true|1|yes|on)$/i.test(req.query.skip_current_image ?? ""), b64);
  });

  // A1111 sends no body; a task id may come as `{"id_task": ...}` or `?id_task=`.
  app.post<{ Querystring: { id_task?: string } }>("/sdapi/v1/interrupt", async (req) => {
    const body = req.body as { id_task?: unknown } | null | undefined;
    const taskId = taskIdOf(body && typeof body === "object" ? body.id_task : undefined) ?? taskIdOf(req.query.id_task);
    jobs.current(ownerOf(req), taskId)?.interrupt();
    return {};
  });

  // Base64 images make these bodies large: they get the upload limit instead of the JSON one.
  const opts = { bodyLimit: ctx.config.limits.maxUploadBytes, schema: { body: a1111CallSchema } };
  app.post<{ Body: A1111Body }>("/sdapi/v1/txt2img", opts, (req, reply) => generate("txt2img", req, reply));
  app.post<{ Body: A1111Body }>("/sdapi/v1/img2img", opts, (req, reply) => generate("img2img", req, reply));

  async function generate(kind: "txt2img" | "img2img", req: FastifyRequest<{ Body: A1111Body }>, reply: FastifyReply): Promise<unknown> {
    const body = req.body;
    const plan = await planA1111(kind, body, ctx.config.limits, ctx.model);
    const refusal = ctx.refusal();
    if (refusal) throw refusal;
    const requests = plan.requests.map((init, i) => new OmniDiffusionRequest({ ...init, requestId: `${req.id}-${i}` }));
    req.log.info({ requestId: req.id, kind, iterations: requests.length, batchSize: plan.batchSize, width: plan.width, height: plan.height, steps: plan.steps, seed: plan.seed, sizeFallbackFrom: plan.sizeFallbackFrom }, "A1111 job accepted");
    const g = new Generation(reply);
    // An abort that fails (the engine closing under it) has nothing left to stop: never an unhandled rejection.
    const abort = (id: string) => void ctx.engine.abort(id).catch((err: unknown) => req.log.debug({ err, requestId: id }, "abort failed"));
    const job = new A1111Job(body.force_task_id || req.id, kind, requests.map((r) => r.requestId), plan.steps ?? 0, abort, ownerOf(req));
    const unwatch = g.begin(ctx);
    const remove = jobs.add(job);
    try {
      const every = previewEvery(stepsRun(plan.steps, requests[0]!));
      // The first iteration to fail fails the call: its siblings are stopped rather than run for nothing.
      let firstFailure: unknown = null;
      const settled = await Promise.allSettled(
        requests.map((r) =>
          ctx.engine
            .generate(r, { signal: g.controller.signal, onProgress: (p) => ((g.last = p), job.onProgress(p)), previewEvery: every })
            .catch((err: unknown) => {
              if (firstFailure === null && !job.interrupted && !g.controller.signal.aborted) {
                firstFailure = err;
                for (const o of requests) if (o !== r) abort(o.requestId);
              }
              throw err;
            })
            .finally(() => job.finished(r.requestId)),
        ),
      );
      const images: GeneratedImage[] = [];
      for (const [i, s] of settled.entries()) {
        if (s.status === "fulfilled") images.push(...s.value.images);
        else if (job.interrupted && toOmniError(s.reason) instanceof AbortedError) images.push(...job.previews(requests[i]!.requestId));
        else {
          ctx.metrics.generation(g.clientGone ? "aborted" : "error", g.seconds);
          if (g.clientGone) {
            logAbort(req, g, s.reason);
            return reply.hijack();
          }
          throw g.failure(firstFailure ?? s.reason);
        }
      }
      if (job.interrupted && images.length === 0) {
        // A1111 answers 200 with no images here; a client could not tell that from a success that sent none.
        ctx.metrics.generation("aborted", g.seconds);
        throw new AbortedError("interrupted (POST /sdapi/v1/interrupt) before any image or preview was ready: nothing to return", { data: { openaiCode: "interrupted" } });
      }
      ctx.metrics.generation("ok", g.seconds, undefined, images.length);
      return a1111Reply(plan, images, job, body);
    } finally {
      remove();
      unwatch();
    }
  }

  function a1111Reply(plan: A1111Plan, images: GeneratedImage[], job: A1111Job, body: A1111Body): unknown {
    return {
      images: plan.sendImages ? images.map(b64) : [],
      parameters: a1111Parameters(body, plan),
      info: a1111Info(plan, ctx.model.id, images.map((img) => img.seed), job.timestamp),
    };
  }
};
