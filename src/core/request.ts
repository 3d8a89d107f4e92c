import { randomUUID } from "node:crypto";
import { z } from "zod";
import { zodToValidationError } from "../utils/zod-error.js";

/** Wire shape of a request (snake_case, readable from Python). */
export const requestDictSchema = z
  .object({
    request_id: z.string().min(1).max(256).optional(),
    prompt: z
      .string()
      .max(10_000)
      .refine((p) => p.trim() !== "", "must not be empty"),
    negative_prompt: z.string().max(10_000).nullish(),
    height: z.number().int().positive().nullish(),
    width: z.number().int().positive().nullish(),
    num_inference_steps: z.number().int().min(1).nullish(),
    guidance_scale: z.number().min(0).max(100).nullish(),
    guidance_rescale: z.number().min(0).max(1).nullish(),
    seed: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).nullish(),
    num_outputs_per_prompt: z.number().int().min(1).nullish(),
    scheduler: z.string().min(1).nullish(),
    return_trajectory_latents: z.boolean().nullish(),
    return_trajectory_timesteps: z.boolean().nullish(),
  })
  .strict();

export type OmniDiffusionRequestDict = z.input<typeof requestDictSchema>;

/** Constructor fields of {@link OmniDiffusionRequest} (camelCase). Unset fields take the model's defaults. */
export interface OmniDiffusionRequestInit {
  prompt: string;
  requestId?: string;
  negativePrompt?: string | null;
  height?: number | null;
  width?: number | null;
  numInferenceSteps?: number | null;
  guidanceScale?: number | null;
  guidanceRescale?: number | null;
  seed?: number | null;
  numOutputsPerPrompt?: number | null;
  scheduler?: string | null;
  returnTrajectoryLatents?: boolean;
  returnTrajectoryTimesteps?: boolean;
}

let counter = 0;
/** Unique across processes and concurrent callers: a random UUID plus a per-process counter. */
export function newRequestId(): string {
  counter = (counter + 1) % Number.MAX_SAFE_INTEGER;
  return `req-${randomUUID()}-${counter}`;
}

const camelToSnake = (s: string) => s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/**
 * One image-generation request, as in vLLM-Omni. `toDict()`/`fromDict()` give the snake_case JSON that
 * the HTTP/gRPC wire and Python peers use; `fromDict` validates and throws a field-level ValidationError.
 */
export class OmniDiffusionRequest {
  readonly requestId: string;
  prompt: string;
  negativePrompt: string | null;
  height: number | null;
  width: number | null;
  numInferenceSteps: number | null;
  guidanceScale: number | null;
  guidanceRescale: number | null;
  seed: number | null;
  numOutputsPerPrompt: number;
  scheduler: string | null;
  returnTrajectoryLatents: boolean;
  returnTrajectoryTimesteps: boolean;

  constructor(init: OmniDiffusionRequestInit) {
    const parsed = requestDictSchema.safeParse(OmniDiffusionRequest.#initToDict(init));
    if (!parsed.success) throw zodToValidationError(parsed.error, "OmniDiffusionRequest", snakeToCamel);
    const d = parsed.data;
    this.requestId = d.request_id ?? newRequestId();
    this.prompt = d.prompt;
    this.negativePrompt = d.negative_prompt ?? null;
    this.height = d.height ?? null;
    this.width = d.width ?? null;
    this.numInferenceSteps = d.num_inference_steps ?? null;
    this.guidanceScale = d.guidance_scale ?? null;
    this.guidanceRescale = d.guidance_rescale ?? null;
    this.seed = d.seed ?? null;
    this.numOutputsPerPrompt = d.num_outputs_per_prompt ?? 1;
    this.scheduler = d.scheduler ?? null;
    this.returnTrajectoryLatents = d.return_trajectory_latents ?? false;
    this.returnTrajectoryTimesteps = d.return_trajectory_timesteps ?? false;
  }

  static #initToDict(init: OmniDiffusionRequestInit): Record<string, unknown> {
    if (init === null || typeof init !== "object") return { prompt: undefined };
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(init)) if (v !== undefined) out[camelToSnake(k)] = v;
    return out;
  }

  /** Plain JSON, snake_case keys. Always carries `request_id`. */
  toDict(): Required<{ [K in keyof OmniDiffusionRequestDict]: Exclude<OmniDiffusionRequestDict[K], undefined> }> {
    return {
      request_id: this.requestId,
      prompt: this.prompt,
      negative_prompt: this.negativePrompt,
      height: this.height,
      width: this.width,
      num_inference_steps: this.numInferenceSteps,
      guidance_scale: this.guidanceScale,
      guidance_rescale: this.guidanceRescale,
      seed: this.seed,
      num_outputs_per_prompt: this.numOutputsPerPrompt,
      scheduler: this.scheduler,
      return_trajectory_latents: this.returnTrajectoryLatents,
      return_trajectory_timesteps: this.returnTrajectoryTimesteps,
    };
  }

  /** Validates a snake_case dict (from JSON, a Python peer, a worker) and builds the request. */
  static fromDict(dict: unknown): OmniDiffusionRequest {
    const parsed = requestDictSchema.safeParse(dict);
    if (!parsed.success) throw zodToValidationError(parsed.error, "request");
    const d = parsed.data;
    return new OmniDiffusionRequest({
      prompt: d.prompt,
      requestId: d.request_id,
      negativePrompt: d.negative_prompt,
      height: d.height,
      width: d.width,
      numInferenceSteps: d.num_inference_steps,
      guidanceScale: d.guidance_scale,
      guidanceRescale: d.guidance_rescale,
      seed: d.seed,
      numOutputsPerPrompt: d.num_outputs_per_prompt,
      scheduler: d.scheduler,
      returnTrajectoryLatents: d.return_trajectory_latents ?? undefined,
      returnTrajectoryTimesteps: d.return_trajectory_timesteps ?? undefined,
    });
  }
}

function snakeToCamel(path: string): string {
  return path.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}
