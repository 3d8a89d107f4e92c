import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";
import { requestError } from "../app/error-mapping.js";
import { PUBLIC_ROUTE } from "../app/public-route.js";
import type { ServerContext } from "../app/server-context.js";
import { BusyTime } from "./busy-time.js";
import { playgroundStatus } from "./playground-status.js";
import { loadStaticAssets, type StaticAsset } from "./static-assets.js";
import { StepTracker } from "./step-tracker.js";

/** Options of {@link playgroundRoutes}. */
export interface PlaygroundOptions {
  ctx: ServerContext;
  /** Folder of the page's files (default: the package's `playground/`). */
  assetsDir?: string;
}

// Everything the page loads comes from this server: no CDN, no inline script, images from data:/blob: URLs.
const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join("; ");

function sendAsset(req: FastifyRequest, reply: FastifyReply, asset: StaticAsset): FastifyReply {
  reply
    .header("etag", asset.etag)
    // Revalidate every load: a new package version must not run against a stale cached script.
    .header("cache-control", "no-cache")
    .header("x-content-type-options", "nosniff")
    .header("content-security-policy", CSP);
  if (req.headers["if-none-match"] === asset.etag) return reply.code(304).send();
  return reply.type(asset.contentType).send(asset.body);
}

/**
 * The web playground (`GET /`, `GET /ui/*`) and the two read-only JSON routes it needs beyond the OpenAI
 * API: `GET /ui/api/status` (model, sizes, samplers, executor, endpoints, queue) and
 * `GET /ui/api/progress/:requestId` (queue position and denoising step of one request). The page is
 * public; the JSON routes need the API key like every other API route.
 */
export const playgroundRoutes: FastifyPluginAsync<PlaygroundOptions> = async (app, { ctx, assetsDir }) => {
  const assets = await loadStaticAssets(assetsDir);
  const tracker = new StepTracker(ctx.engine);
  const busy = new BusyTime();
  // A batch event says how many requests failed, not which images: count the successful share of its images.
  const batches = ctx.engine.onBatch((e) => busy.record(performance.now(), e.durationMs, e.requests ? Math.round((e.images * (e.requests - e.failed)) / e.requests) : 0));
  app.addHook("onClose", async () => {
    tracker.dispose();
    batches.dispose();
  });

  app.get("/", { config: PUBLIC_ROUTE }, (req, reply) => sendAsset(req, reply, assets.get("index.html")!));
  app.get<{ Params: { "*": string } }>("/ui/*", { config: PUBLIC_ROUTE }, (req, reply) => {
    const asset = assets.get(req.params["*"]);
    if (!asset) throw requestError(404, `No playground file '${req.params["*"]}'.`, null, "unknown_url");
    return sendAsset(req, reply, asset);
  });

  app.get("/ui/api/status", async () => playgroundStatus(ctx, busy.totals));
  app.get<{ Params: { requestId: string } }>("/ui/api/progress/:requestId", async (req) => tracker.progress(req.params.requestId));
};
