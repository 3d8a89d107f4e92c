// @ts-check
/**
 * The form's parameters: read and checked from the form's text values, turned into the OpenAI request body,
 * and turned back into form values when a gallery entry is restored. Plain data in, plain data out, so the
 * tests run it in Node.
 */

/**
 * @typedef {object} GenerationParams
 * @property {string} prompt
 * @property {string} negativePrompt
 * @property {string} size `WxH`, or `auto` (the model's own size) when the server cannot list sizes
 * @property {number} steps
 * @property {number} guidance
 * @property {string} sampler "" for the model's default
 * @property {number | null} seed null: pick a random one when generating
 * @property {number} n images
 */

/** @typedef {Record<keyof GenerationParams, string>} FormValues */

/** Largest seed the server accepts (it adds the image index to it). */
export const MAX_SEED = Number.MAX_SAFE_INTEGER - 16;

/** A form value the server would refuse, named so the page can point at the field. */
export class FieldError extends Error {
  /** @param {keyof GenerationParams} field @param {string} message */
  constructor(field, message) {
    super(message);
    this.name = "FieldError";
    this.field = field;
  }
}

/**
 * @param {keyof GenerationParams} field
 * @param {string} label
 * @param {string} raw
 * @param {number} min
 * @param {number} max
 * @param {boolean} integer
 */
function numberField(field, label, raw, min, max, integer) {
  const text = raw.trim();
  const v = Number(text);
  if (text === "" || !Number.isFinite(v) || (integer && !Number.isInteger(v)) || v < min || v > max) {
    throw new FieldError(field, `${label} must be ${integer ? "a whole number" : "a number"} from ${min} to ${max}`);
  }
  return v;
}

/**
 * Checks the form's values; throws a {@link FieldError} naming the first bad one.
 * @param {FormValues} values
 * @param {{ maxSteps?: number, maxN?: number }} [limits]
 * @returns {GenerationParams}
 */
export function parseForm(values, limits = {}) {
  const prompt = values.prompt.trim();
  if (!prompt) throw new FieldError("prompt", "Write a prompt first");
  if (!/^(\d+x\d+|auto)$/.test(values.size)) throw new FieldError("size", `Size must look like 32x32 (or be auto), not '${values.size}'`);
  return {
    prompt,
    negativePrompt: values.negativePrompt.trim(),
    size: values.size,
    steps: numberField("steps", "Steps", values.steps, 1, limits.maxSteps ?? 150, true),
    guidance: numberField("guidance", "Guidance", values.guidance, 0, 100, false),
    sampler: values.sampler,
    seed: values.seed.trim() === "" ? null : numberField("seed", "Seed", values.seed, 0, MAX_SEED, true),
    n: numberField("n", "Number of images", values.n, 1, limits.maxN ?? 10, true),
  };
}

/**
 * A seed for a request whose seed field is empty.
 * @param {() => number} [random] uniform in [0, 1)
 */
export function randomSeed(random = Math.random) {
  return Math.floor(random() * 2 ** 32);
}

/**
 * The body of `POST /v1/images/generations` for these parameters, streamed with partial images.
 * @param {GenerationParams & { seed: number }} p
 * @param {{ partialImages?: number, model?: string }} [opts]
 */
export function toRequestBody(p, opts = {}) {
  return {
    prompt: p.prompt,
    ...(p.negativePrompt ? { negative_prompt: p.negativePrompt } : {}),
    ...(opts.model ? { model: opts.model } : {}),
    size: p.size,
    n: p.n,
    num_inference_steps: p.steps,
    guidance_scale: p.guidance,
    ...(p.sampler ? { scheduler: p.sampler } : {}),
    seed: p.seed,
    response_format: "b64_json",
    stream: true,
    partial_images: opts.partialImages ?? 3,
  };
}

/**
 * The form values that reproduce `p` (restoring a gallery entry): parseForm(toFormValues(p)) equals p.
 * @param {GenerationParams} p
 * @returns {FormValues}
 */
export function toFormValues(p) {
  return {
    prompt: p.prompt,
    negativePrompt: p.negativePrompt,
    size: p.size,
    steps: String(p.steps),
    guidance: String(p.guidance),
    sampler: p.sampler,
    seed: p.seed === null ? "" : String(p.seed),
    n: String(p.n),
  };
}

/**
 * One line describing a finished generation, for the gallery's caption.
 * @param {GenerationParams} p
 */
export function describeParams(p) {
  const parts = [p.size, `${p.steps} steps`, `guidance ${p.guidance}`, p.sampler || "default sampler", `seed ${p.seed ?? "random"}`];
  if (p.negativePrompt) parts.push(`not: ${p.negativePrompt}`);
  return parts.join(" · ");
}
