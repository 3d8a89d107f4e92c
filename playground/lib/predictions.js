// @ts-check
/**
 * The playground's jobs are predictions (`/v1/predictions`, kept in the server's store): this module turns the
 * form's parameters into a prediction's `input` and back, reads a job's progress from its logs and says where it
 * stands. Plain data in, plain data out, so the tests run it in Node.
 */

/** @typedef {import("./params.js").GenerationParams} GenerationParams */

/**
 * @typedef {object} Prediction the parts of the server's prediction object the page reads
 * @property {string} id
 * @property {string} status starting | processing | succeeded | failed | canceled | aborted
 * @property {Record<string, any>} input
 * @property {string[] | null} output
 * @property {string | null} error
 * @property {string} logs
 * @property {string} created_at
 * @property {number | null} [queue_position]
 * @property {{ get: string, cancel: string, stream: string }} urls
 */

const FINAL = new Set(["succeeded", "failed", "canceled", "aborted"]);

/** @param {string} status */
export const isFinal = (status) => FINAL.has(status);

/**
 * The prediction input for the form's parameters (a seed must be chosen by then).
 * @param {GenerationParams} p
 */
export function toPredictionInput(p) {
  const size = /^(\d+)x(\d+)$/.exec(p.size);
  return {
    prompt: p.prompt,
    ...(p.negativePrompt ? { negative_prompt: p.negativePrompt } : {}),
    ...(size ? { width: Number(size[1]), height: Number(size[2]) } : {}),
    num_inference_steps: p.steps,
    guidance_scale: p.guidance,
    ...(p.sampler ? { scheduler: p.sampler } : {}),
    seed: p.seed,
    num_outputs: p.n,
  };
}

/**
 * The form's parameters of a prediction's input: what restoring it fills in. Fields the client left out (a job
 * from another client) take the model's `defaults` where known.
 * @param {Record<string, any>} input
 * @param {{ steps: number, guidance: number } | null} [defaults]
 * @returns {GenerationParams}
 */
export function paramsFromInput(input, defaults = null) {
  const num = (/** @type {unknown} */ v, /** @type {number} */ d) => (typeof v === "number" && Number.isFinite(v) ? v : d);
  return {
    prompt: String(input.prompt ?? ""),
    negativePrompt: String(input.negative_prompt ?? ""),
    size: input.width && input.height ? `${input.width}x${input.height}` : "auto",
    steps: num(input.num_inference_steps, defaults?.steps ?? NaN),
    guidance: num(input.guidance_scale, defaults?.guidance ?? NaN),
    sampler: typeof input.scheduler === "string" ? input.scheduler : "",
    seed: typeof input.seed === "number" ? input.seed : null,
    n: num(input.num_outputs, 1),
  };
}

/**
 * The last denoising step the logs report (tqdm's ` 50%|█████     | 6/12` lines), or null before the first.
 * @param {string} logs
 * @returns {{ step: number, total: number } | null}
 */
export function progressOf(logs) {
  let found = null;
  for (const m of logs.matchAll(/\|\s*(\d+)\/(\d+)\s*$/gm)) found = { step: Number(m[1]), total: Number(m[2]) };
  return found;
}

/**
 * What a job's line in the list says about where it stands.
 * @param {Prediction} p
 * @param {{ step: number, total: number } | null} progress
 */
export function describeState(p, progress) {
  if (p.queue_position) return `queued · position ${p.queue_position}`;
  switch (p.status) {
    case "starting":
      return "queued";
    case "processing":
      return progress ? `running · step ${progress.step} of ${progress.total}` : "running";
    case "failed":
      return `failed: ${p.error ?? "unknown error"}`;
    default:
      return p.status;
  }
}

/**
 * The path (and query) of a URL the server built: the page fetches it from its own origin, so a server whose
 * `--public-url` differs from the address the browser used (or a proxy) still works within the page's CSP.
 * @param {string} url
 */
export function pathOf(url) {
  const u = new URL(url, "http://x");
  return `${u.pathname}${u.search}`;
}
