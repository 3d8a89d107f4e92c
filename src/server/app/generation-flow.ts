import type { FastifyReply, FastifyRequest } from "fastify";
import type { GeneratedImage, StageMetrics } from "../../core/output.js";
import type { OmniDiffusionRequest } from "../../core/request.js";
import type { OmniRequestOutput } from "../../core/request-output.js";
import type { StepProgress } from "../../core/progress.js";
import type { EngineGenerateOptions } from "../../engine/engine-events.js";
import { AbortedError, ClosedError, OmniError, toOmniError } from "../../errors/omni-error.js";
import { pngOf } from "../../utils/png.js";
import { toHttpError } from "./error-mapping.js";
import type { ServerContext } from "./server-context.js";
import { SseWriter } from "./sse-writer.js";

/** How a dialect wants its images answered: what {@link answerImages} reads of a parsed request. */
export interface ImageAnswerOptions {
  stream: boolean;
  /** Partial images per image while streaming (0: none). */
  partialImages: number;
  responseFormat: "b64_json" | "url";
  /** Echoed in stream events (`quality` of the OpenAI API). */
  quality: "low" | "medium" | "high" | "auto";
  /** Steps the request will run (its own, or the model's default when known). */
  steps: number | null;
  /** How the engine's one limits check names fields and which tighter limits of the dialect it applies. */
  submit?: Pick<EngineGenerateOptions, "fieldName" | "limits">;
}

/**
 * The preview interval that gives `partial` evenly spaced partial images before the final one of a
 * `steps`-step run (e.g. 20 steps, 3 partials: steps 5, 10, 15). 0 when none are wanted.
 */
export function previewInterval(steps: number | null, partial: number): number {
  if (partial <= 0) return 0;
  return Math.max(1, Math.ceil((steps ?? 20) / (partial + 1)));
}

const USAGE = { input_tokens: 0, input_tokens_details: { image_tokens: 0, text_tokens: 0 }, output_tokens: 0, total_tokens: 0 };

/** One generation in flight: how it can end early, and what it saw last (for the log of an abort). */
export class Generation {
  readonly controller = new AbortController();
  readonly started = performance.now();
  last: StepProgress | null = null;
  #clientGone = false;

  constructor(readonly reply: FastifyReply) {}

  /** True when the client disconnected before its response was complete. */
  get clientGone(): boolean {
    return this.#clientGone;
  }

  /** Watches the connection; returns the function that stops watching. */
  #watch(): () => void {
    const res = this.reply.raw;
    const onClose = () => {
      if (res.writableFinished) return;
      this.#clientGone = true;
      this.controller.abort(new AbortedError("the client disconnected"));
    };
    res.once("close", onClose);
    return () => res.off("close", onClose);
  }

  /**
   * Registers the generation with the server (so a shutdown waits for it or aborts it) until its response
   * is out, and watches the connection; returns the function that stops watching.
   */
  begin(ctx: ServerContext): () => void {
    // In flight until the response is out (not when the handler returns: fastify writes it after that), so a
    // shutdown never closes a connection whose answer is still being written.
    const untrack = ctx.track((reason) => this.controller.abort(reason));
    this.reply.raw.once("finish", untrack).once("close", untrack);
    return this.#watch();
  }

  get seconds(): number {
    return (performance.now() - this.started) / 1000;
  }

  /** The error to answer with: a shutdown abort is a 503, anything else stays as it is. */
  failure(err: unknown): OmniError {
    const reason: unknown = this.controller.signal.reason;
    if (this.controller.signal.aborted && reason instanceof ClosedError) return reason;
    return toOmniError(err);
  }
}

/** `Server-Timing` value: the engine's stage durations plus the server's PNG encoding, in ms. */
function serverTiming(m: StageMetrics, encodeMs: number): string {
  const parts: [string, number | undefined][] = [
    ["queue", m.queueMs],
    ["first_step", m.firstStepMs],
    ["encode_text", m.encodeTextMs],
    ["denoise", m.denoiseMs],
    ["decode", m.decodeMs],
    ["execute", m.totalMs],
    ["encode_png", encodeMs],
  ];
  return parts.filter(([, v]) => typeof v === "number").map(([k, v]) => `${k};dur=${v!.toFixed(1)}`).join(", ");
}

/** Resolves with how `p` settled if it does so before the next macrotask, else null. */
function settledNow<T>(p: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown } | null> {
  return new Promise((resolve) => {
    const t = setImmediate(() => resolve(null));
    p.then(
      (value) => {
        clearImmediate(t);
        resolve({ ok: true, value });
      },
      (error: unknown) => {
        clearImmediate(t);
        resolve({ ok: false, error });
      },
    );
  });
}

/** Logs a client disconnect: the last step the server saw, and the step the worker stopped at when it says. */
export function logAbort(req: FastifyRequest, g: Generation, err: unknown): void {
  const stoppedAt = toOmniError(err).data.step;
  req.log.info(
    { requestId: req.id, step: g.last?.step ?? 0, totalSteps: g.last?.totalSteps ?? null, ...(typeof stoppedAt === "number" ? { stoppedAtStep: stoppedAt } : {}) },
    "client disconnected; generation aborted",
  );
}

/** The configured public base plus the file path; a relative path without one (never the client's Host header). */
function imageUrl(ctx: ServerContext, id: string): string {
  const base = (ctx.config.publicBaseUrl ?? "").replace(/\/+$/, "");
  return `${base}/v1/images/files/${id}`;
}

/**
 * Runs an OpenAI images request (generation or edit) and answers it: `{created, data: [...]}` as JSON, or
 * Server-Sent Events named `<eventPrefix>.partial_image` / `<eventPrefix>.completed` when streaming
 * (`image_generation` for generations, `image_edit` for edits, as OpenAI names them). A client that
 * disconnects aborts its request, which the engine stops between denoising steps.
 */
export async function answerImages(
  req: FastifyRequest,
  reply: FastifyReply,
  ctx: ServerContext,
  request: OmniDiffusionRequest,
  parsed: ImageAnswerOptions,
  eventPrefix: "image_generation" | "image_edit",
): Promise<unknown> {
  const g = new Generation(reply);
  const unwatch = g.begin(ctx);
  try {
    if (parsed.stream) return await stream(req, ctx, request, parsed, g, eventPrefix);
    let out: OmniRequestOutput;
    try {
      out = await ctx.engine.generate(request, { ...parsed.submit, signal: g.controller.signal, onProgress: (p) => (g.last = p) });
    } catch (err) {
      ctx.metrics.generation(g.clientGone ? "aborted" : "error", g.seconds);
      if (!g.clientGone) throw g.failure(err);
      logAbort(req, g, err);
      return reply.hijack(); // nobody is left to answer
    }
    const t0 = performance.now();
    const data = out.images.map((img) => {
      const png = pngOf(img); // the PNG it arrived with from a remote peer, else the one encode
      if (parsed.responseFormat === "b64_json") return { b64_json: png.toString("base64"), revised_prompt: null };
      return { url: imageUrl(ctx, ctx.store.put(png).id), revised_prompt: null };
    });
    const encodeMs = performance.now() - t0;
    ctx.metrics.generation("ok", g.seconds, out.metrics, out.images.length);
    reply.header("server-timing", serverTiming(out.metrics, encodeMs));
    const first = out.images[0];
    return { created: Math.floor(Date.now() / 1000), data, ...(first ? { size: `${first.width}x${first.height}` } : {}), output_format: "png" };
  } finally {
    unwatch();
  }
}

/** The SSE variant: partial images while denoising, then one `completed` event per image. */
async function stream(req: FastifyRequest, ctx: ServerContext, request: OmniDiffusionRequest, parsed: ImageAnswerOptions, g: Generation, prefix: string): Promise<void> {
  const sse = new SseWriter(g.reply.raw);
  const sent = new Map<number, number>();
  const common = (img: GeneratedImage) => ({
    b64_json: pngOf(img).toString("base64"),
    created_at: Math.floor(Date.now() / 1000),
    size: `${img.width}x${img.height}`,
    quality: parsed.quality,
    background: "opaque",
    output_format: "png",
    index: img.index,
  });
  const onProgress = (p: StepProgress) => {
    g.last = p;
    for (const img of p.preview ?? []) {
      const k = sent.get(img.index) ?? 0;
      if (k >= parsed.partialImages) continue;
      sent.set(img.index, k + 1);
      sse.event(`${prefix}.partial_image`, { type: `${prefix}.partial_image`, ...common(img), partial_image_index: k });
    }
  };
  const every = previewInterval(parsed.steps, parsed.partialImages);
  const pending = ctx.engine.generate(request, { ...parsed.submit, signal: g.controller.signal, onProgress, ...(every ? { previewEvery: every } : {}) });
  // What the engine refuses on submission (queue full, limits, closed) still gets its own HTTP status.
  const early = await settledNow(pending);
  if (early && !early.ok) {
    ctx.metrics.generation("error", g.seconds);
    throw g.failure(early.error);
  }
  g.reply.hijack();
  sse.open({ "x-request-id": request.requestId });
  try {
    const out = await pending;
    for (const img of out.images) sse.event(`${prefix}.completed`, { type: `${prefix}.completed`, ...common(img), usage: USAGE });
    ctx.metrics.generation("ok", g.seconds, out.metrics, out.images.length);
  } catch (err) {
    ctx.metrics.generation(g.clientGone ? "aborted" : "error", g.seconds);
    if (g.clientGone) logAbort(req, g, err);
    else {
      const e = g.failure(err);
      if (e.statusCode >= 500) req.log.error({ err: e, requestId: req.id }, "streamed generation failed");
      sse.event("error", { type: "error", error: toHttpError(e, ctx.config.limits, req.id).body.error });
    }
  } finally {
    sse.end();
  }
}
