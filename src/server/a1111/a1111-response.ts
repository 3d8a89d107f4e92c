import type { A1111Body, A1111Plan } from "./a1111-request.js";
import { a1111ScheduleLabel } from "./a1111-samplers.js";

/** `Version:` of the infotexts and `info.version`. */
export const A1111_VERSION = "omni-diffusion";

/**
 * A1111's infotext of one image (`create_infotext`): the prompt, the negative prompt line when there is
 * one, then the `Key: value, ...` parameter line clients parse (LibreChat keeps its last line).
 */
function infotext(plan: A1111Plan, model: string, seed: number, scheduler: string | null): string {
  const params: [string, string | number | null][] = [
    ["Steps", plan.steps],
    ["Sampler", plan.samplerName],
    ["Schedule type", scheduler ? a1111ScheduleLabel(scheduler) : "Automatic"],
    ["CFG scale", plan.cfgScale],
    ["Seed", seed],
    ["Size", plan.width !== null && plan.height !== null ? `${plan.width}x${plan.height}` : null],
    ["Model", model],
    ["Denoising strength", plan.kind === "img2img" ? plan.denoisingStrength : null],
    ["Version", A1111_VERSION],
  ];
  const first = plan.requests[0]!;
  const lines = [first.prompt];
  if (first.negativePrompt) lines.push(`Negative prompt: ${first.negativePrompt}`);
  lines.push(params.filter(([, v]) => v !== null).map(([k, v]) => `${k}: ${v}`).join(", "));
  return lines.join("\n");
}

/**
 * `info` of a txt2img/img2img reply: the JSON string of A1111's `Processed.js()`, with the fields clients
 * read (`seed`, `all_seeds`, `width`, `height`, `infotexts`, ...). `seeds` are those of the images returned.
 */
export function a1111Info(plan: A1111Plan, model: string, seeds: number[], timestamp: string): string {
  const first = plan.requests[0]!;
  const scheduler = first.scheduler ?? null;
  const allSeeds = seeds.length ? seeds : [plan.seed];
  return JSON.stringify({
    prompt: first.prompt,
    all_prompts: allSeeds.map(() => first.prompt),
    negative_prompt: first.negativePrompt ?? "",
    all_negative_prompts: allSeeds.map(() => first.negativePrompt ?? ""),
    seed: allSeeds[0],
    all_seeds: allSeeds,
    subseed: -1,
    all_subseeds: allSeeds.map(() => -1),
    subseed_strength: 0,
    width: plan.width,
    height: plan.height,
    sampler_name: plan.samplerName,
    cfg_scale: plan.cfgScale,
    steps: plan.steps,
    batch_size: plan.batchSize,
    restore_faces: false,
    face_restoration_model: null,
    sd_model_name: model,
    sd_model_hash: null,
    sd_vae_name: null,
    sd_vae_hash: null,
    seed_resize_from_w: -1,
    seed_resize_from_h: -1,
    denoising_strength: plan.denoisingStrength,
    extra_generation_params: {
      "Schedule type": scheduler ? a1111ScheduleLabel(scheduler) : "Automatic",
      ...(plan.sizeFallbackFrom ? { "Requested size": `${plan.sizeFallbackFrom.width}x${plan.sizeFallbackFrom.height}` } : {}),
    },
    index_of_first_image: 0,
    infotexts: allSeeds.map((s) => infotext(plan, model, s, scheduler)),
    styles: [],
    job_timestamp: timestamp,
    clip_skip: 1,
    is_using_inpainting_conditioning: false,
    version: A1111_VERSION,
  });
}

/**
 * `parameters` of a reply: the request as received, with what was filled in (seed, size, steps, sampler),
 * and without the init images and mask (A1111 drops them unless `include_init_images`).
 */
export function a1111Parameters(body: A1111Body, plan: A1111Plan): Record<string, unknown> {
  const out: Record<string, unknown> = {
    ...body,
    prompt: plan.requests[0]!.prompt,
    negative_prompt: body.negative_prompt ?? "",
    seed: plan.seed,
    batch_size: plan.batchSize,
    n_iter: plan.requests.length,
    steps: plan.steps,
    cfg_scale: plan.cfgScale,
    width: plan.width,
    height: plan.height,
    sampler_name: plan.samplerName,
    denoising_strength: plan.denoisingStrength,
  };
  if (plan.kind === "img2img" && !body.include_init_images) {
    out.init_images = null;
    out.mask = null;
  }
  return out;
}
