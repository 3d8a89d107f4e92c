import { randomInt } from "node:crypto";
import { FormData } from "undici";
import { z } from "zod";
import type { OmniDiffusionConfig } from "../core/config.js";
import { DiffusionOutput, type GeneratedImage } from "../core/output.js";
import type { OmniDiffusionRequest } from "../core/request.js";
import { OmniError, TransportError, UnknownMethodError, ValidationError } from "../errors/omni-error.js";
import { encodeOpenAIMaskPng, encodePng, lazyPngImage, type RgbImage } from "../utils/png.js";
import { guardPngAsync } from "../utils/png-guard.js";
import type { CollectiveRpcOptions } from "./base.js";
import type { Deadline } from "../policies/deadline.js";
import type { Endpoint } from "../policies/endpoint-pool.js";
import { HttpClient } from "./shared/http-client.js";
import { RemoteExecutor, type BatchPlan } from "./shared/remote-executor.js";
import { httpBaseUrl, remoteOptionsSchema, requireEndpoints } from "./shared/remote-options.js";
import type { AttemptContext } from "../policies/remote-policy.js";

const openaiOptionsSchema = remoteOptionsSchema.extend({
  /** Sent as `model`; absent: the server's default model. */
  model: z.string().min(1).optional(),
});

type OpenAIOptions = z.output<typeof openaiOptionsSchema>;

/** OpenAI request parameters → the request fields they come from (to name the field of a 4xx). */
const FIELD_OF_PARAM: Record<string, string> = {
  prompt: "prompt",
  n: "numOutputsPerPrompt",
  // One `size` parameter covers both dimensions; errors about it are reported on width.
  size: "width",
  seed: "seed",
  num_inference_steps: "numInferenceSteps",
  guidance_scale: "guidanceScale",
  guidance_rescale: "guidanceRescale",
  negative_prompt: "negativePrompt",
  scheduler: "scheduler",
  vae: "vae",
};

/** Reply of the emulated `ping` RPC: the OpenAI API exposes no process, so `pid` is -1. */
interface OpenAIPing {
  rank: 0;
  pid: -1;
  time: number;
  endpoint: string;
}

/**
 * Sends each request to any server with the OpenAI images API (`POST /v1/images/generations`): vLLM-Omni's
 * server, omni-diffusion's own `serve`, or OpenAI. Fields map as `numOutputsPerPrompt` → `n`,
 * width × height → `size` ("WxH", both or neither), and as vLLM-Omni's extensions `seed`,
 * `num_inference_steps`, `guidance_scale`, `negative_prompt` (plus `guidance_rescale`, `scheduler` and `vae` when
 * set); images come back as `b64_json` PNGs. A request without a seed gets a random one, so every image's
 * seed is known (image i used `seed + i`).
 *
 * The API has no RPC: `collectiveRpc("ping")` is emulated with a `GET /v1/models` round trip (one rank,
 * `pid` -1) and other methods throw UnknownMethodError; health is the same round trip. Trajectories cannot
 * be returned. Each request is its own call through the shared resilience layer, so an abort cancels it.
 *
 * `executorOptions`: `endpoints` (base URLs, required), `apiKey`, `model`, `timeoutMs`, `retries`, and
 * the shared resilience knobs.
 *
 * @example
 * ```ts
 * import { DiffusionEngine } from "../engine/engine.js";
 * const engine = await DiffusionEngine.create({
 *   executorClass: "openai",
 *   executorOptions: { endpoints: ["http://vllm-omni:8000"], apiKey: "sk-...", model: "Qwen/Qwen-Image" },
 * });
 * ```
 */
export class OpenAIImagesExecutor extends RemoteExecutor<HttpClient, OpenAIOptions> {
  #seeds = new WeakMap<OmniDiffusionRequest, number>();

  constructor(config: OmniDiffusionConfig) {
    super(config, openaiOptionsSchema);
  }

  protected endpointNames(): string[] {
    return requireEndpoints(this.options.endpoints, "OpenAIImagesExecutor").map((e) => httpBaseUrl(e).replace(/\/v1$/, ""));
  }

  protected connect(endpoint: string): HttpClient {
    return new HttpClient(endpoint, { apiKey: this.options.apiKey });
  }

  protected disconnect(client: HttpClient): Promise<void> {
    return client.close();
  }

  /** One call per request (the API takes one prompt per call); what the API cannot express is refused up front. */
  protected override planBatches(requests: OmniDiffusionRequest[]): BatchPlan {
    const rejected: Record<string, OmniError> = {};
    const batches: OmniDiffusionRequest[][] = [];
    for (const r of requests) {
      if (r.returnTrajectoryLatents || r.returnTrajectoryTimesteps) {
        rejected[r.requestId] = new ValidationError("the OpenAI images API cannot return trajectories", { field: r.returnTrajectoryLatents ? "returnTrajectoryLatents" : "returnTrajectoryTimesteps" });
      } else if ((r.width === null) !== (r.height === null)) {
        rejected[r.requestId] = new ValidationError("the OpenAI images API takes a size: set both width and height, or neither", { field: r.width === null ? "width" : "height" });
      } else batches.push([r]);
    }
    return { batches, rejected };
  }

  protected async generateOn(ctx: AttemptContext<HttpClient>, batch: OmniDiffusionRequest[]): Promise<DiffusionOutput> {
    const r = batch[0]!;
    const seed = this.#seedOf(r);
    const body: Record<string, unknown> = { prompt: r.prompt, n: r.numOutputsPerPrompt, response_format: "b64_json", seed };
    if (this.options.model) body.model = this.options.model;
    if (r.width !== null && r.height !== null) body.size = `${r.width}x${r.height}`;
    if (r.numInferenceSteps !== null) body.num_inference_steps = r.numInferenceSteps;
    if (r.guidanceScale !== null) body.guidance_scale = r.guidanceScale;
    if (r.guidanceRescale !== null) body.guidance_rescale = r.guidanceRescale;
    if (r.negativePrompt !== null) body.negative_prompt = r.negativePrompt;
    if (r.scheduler !== null) body.scheduler = r.scheduler;
    if (r.vae !== null) body.vae = r.vae;
    let reply: { data?: { b64_json?: unknown }[] } | null;
    try {
      const call = r.image ? { path: "/v1/images/edits", form: editForm(r, r.image, body) } : { path: "/v1/images/generations", body };
      reply = (await ctx.endpoint.client.call({ method: "POST", ...call, deadline: ctx.deadline })) as typeof reply;
    } catch (err) {
      throw withRequestField(err);
    }
    const data = Array.isArray(reply?.data) ? reply.data : [];
    if (data.length !== r.numOutputsPerPrompt || data.some((d) => typeof d.b64_json !== "string")) {
      throw new TransportError(`${ctx.endpoint.url}: expected ${r.numOutputsPerPrompt} b64_json image(s), got ${data.length}`, { retryable: false, data: { endpoint: ctx.endpoint.url } });
    }
    // A peer's image is untrusted bytes: checked off the event loop, at most the size asked for (a bomb is
    // refused here), then kept as PNG: decoded only if someone reads its pixels, sent on as it came otherwise.
    const maxPixels = r.width !== null && r.height !== null ? r.width * r.height : undefined;
    const output: GeneratedImage[] = await Promise.all(
      data.map(async (d, index) => {
        const field = `data.${index}.b64_json`;
        const png = Buffer.from(d.b64_json as string, "base64");
        try {
          const { width, height } = await guardPngAsync(png, { field, maxPixels });
          return lazyPngImage(png, width, height, { requestId: r.requestId, index, seed: seed + index }, field);
        } catch (err) {
          throw new TransportError(`${ctx.endpoint.url}: ${(err as Error).message}`, { retryable: false, cause: err, data: { endpoint: ctx.endpoint.url } });
        }
      }),
    );
    return new DiffusionOutput({ output });
  }

  /** The request's seed, or one drawn once per request (so a retry asks for the same images). */
  #seedOf(r: OmniDiffusionRequest): number {
    if (r.seed !== null) return r.seed;
    let seed = this.#seeds.get(r);
    if (seed === undefined) this.#seeds.set(r, (seed = randomInt(0, 2 ** 31)));
    return seed;
  }

  protected async rpcOn(ctx: AttemptContext<HttpClient>, method: string, opts: CollectiveRpcOptions): Promise<unknown> {
    if (method !== "ping") {
      throw new UnknownMethodError(`the OpenAI images API has no RPC method "${method}" (only "ping" is emulated)`, { data: { method, endpoint: ctx.endpoint.url } });
    }
    if (opts.uniqueReplyRank !== undefined && opts.uniqueReplyRank !== 0) {
      throw new ValidationError(`uniqueReplyRank must be 0 for OpenAIImagesExecutor (one rank), got ${opts.uniqueReplyRank}`, { field: "uniqueReplyRank" });
    }
    await this.healthOn(ctx.endpoint, ctx.deadline);
    const reply: OpenAIPing = { rank: 0, pid: -1, time: Date.now(), endpoint: ctx.endpoint.url };
    return opts.uniqueReplyRank === 0 ? reply : [reply];
  }

  protected async healthOn(endpoint: Endpoint<HttpClient>, deadline: Deadline): Promise<void> {
    await endpoint.client.call({ method: "GET", path: "/v1/models", deadline });
  }
}

/** A 4xx naming an OpenAI parameter, renamed to the request field it came from (the parameter stays in `data.param`). */
function withRequestField(err: unknown): unknown {
  // hasOwn: `param` comes from the remote server's error body.
  if (err instanceof ValidationError && typeof err.field === "string" && Object.hasOwn(FIELD_OF_PARAM, err.field)) {
    const data = err.data as Record<string, unknown>;
    data.param = err.field;
    data.field = FIELD_OF_PARAM[err.field];
  }
  return err;
}

/**
 * An edit as OpenAI's `POST /v1/images/edits` takes it: multipart, the image as a PNG file, the mask folded
 * into a second PNG's alpha (transparent = repaint; `encodeOpenAIMaskPng`), every other field as text, plus
 * `strength` (our server's img2img extension; servers that do not know it may refuse it).
 */
function editForm(r: OmniDiffusionRequest, image: RgbImage, fields: Record<string, unknown>): FormData {
  const form = new FormData();
  form.append("image", new Blob([encodePng(image)], { type: "image/png" }), "image.png");
  if (r.mask) form.append("mask", new Blob([encodeOpenAIMaskPng(image, r.mask)], { type: "image/png" }), "mask.png");
  for (const [k, v] of Object.entries(fields)) form.append(k, String(v));
  if (r.strength !== null) form.append("strength", String(r.strength));
  return form;
}
