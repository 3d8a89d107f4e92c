import { requestInitSchema, type OmniDiffusionRequestInit } from "../../core/request.js";

const f = requestInitSchema.shape;

/**
 * SDXL's request fields as JSON bodies spell them (diffusers' argument names), for the routes that take the
 * engine's extensions (OpenAI's `/v1/images/*`): the second encoder's prompts, size conditioning, the refiner's
 * aesthetic scores and the ensemble's switch point. Checked by the same schema as the request itself; models
 * that would not read a field refuse it by name (src/pipelines/sdxl/).
 */
export const sdxlBodyFields = {
  prompt_2: f.prompt2,
  negative_prompt_2: f.negativePrompt2,
  original_size: f.originalSize,
  crops_coords_top_left: f.cropsCoordsTopLeft,
  target_size: f.targetSize,
  aesthetic_score: f.aestheticScore,
  negative_aesthetic_score: f.negativeAestheticScore,
  denoising_end: f.denoisingEnd,
};

type SdxlBody = { [K in keyof typeof sdxlBodyFields]?: OmniDiffusionRequestInit[keyof OmniDiffusionRequestInit] | null };

/** The request init fields of a body's SDXL fields (unset ones are left out). */
export function sdxlInit(body: SdxlBody): Partial<OmniDiffusionRequestInit> {
  const b = body as Record<keyof typeof sdxlBodyFields, any>;
  const init: Partial<OmniDiffusionRequestInit> = {
    prompt2: b.prompt_2,
    negativePrompt2: b.negative_prompt_2,
    originalSize: b.original_size,
    cropsCoordsTopLeft: b.crops_coords_top_left,
    targetSize: b.target_size,
    aestheticScore: b.aesthetic_score,
    negativeAestheticScore: b.negative_aesthetic_score,
    denoisingEnd: b.denoising_end,
  };
  return Object.fromEntries(Object.entries(init).filter(([, v]) => v !== undefined && v !== null));
}
