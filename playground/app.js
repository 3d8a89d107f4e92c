// @ts-check
import { ApiError, postApi } from "./lib/api.js";
import { FieldError, parseForm, randomSeed, toFormValues } from "./lib/params.js";
import { isFinal, toPredictionInput } from "./lib/predictions.js";
import { JobList } from "./job-list.js";
import { StatusPanel } from "./status-panel.js";

/** localStorage key of the API key. Present (even empty) once the user answered the question. */
const KEY_STORAGE = "omni-diffusion.apiKey";

/** @param {string} id */
const byId = (id) => /** @type {any} */ (document.getElementById(id));

const el = {
  keyForm: /** @type {HTMLFormElement} */ (byId("key-form")),
  key: /** @type {HTMLInputElement} */ (byId("api-key")),
  form: /** @type {HTMLFormElement} */ (byId("generate-form")),
  prompt: /** @type {HTMLTextAreaElement} */ (byId("prompt")),
  negativePrompt: /** @type {HTMLTextAreaElement} */ (byId("negative-prompt")),
  size: /** @type {HTMLSelectElement} */ (byId("size")),
  steps: /** @type {HTMLInputElement} */ (byId("steps")),
  guidance: /** @type {HTMLInputElement} */ (byId("guidance")),
  sampler: /** @type {HTMLSelectElement} */ (byId("sampler")),
  seed: /** @type {HTMLInputElement} */ (byId("seed")),
  n: /** @type {HTMLInputElement} */ (byId("n")),
  seedRandom: /** @type {HTMLButtonElement} */ (byId("seed-random")),
  seedReuse: /** @type {HTMLButtonElement} */ (byId("seed-reuse")),
  generate: /** @type {HTMLButtonElement} */ (byId("generate")),
  cancel: /** @type {HTMLButtonElement} */ (byId("cancel")),
  progress: /** @type {HTMLElement} */ (byId("progress")),
  progressBar: /** @type {HTMLProgressElement} */ (byId("progress-bar")),
  progressText: /** @type {HTMLElement} */ (byId("progress-text")),
  preview: /** @type {HTMLImageElement} */ (byId("preview")),
  error: /** @type {HTMLElement} */ (byId("error")),
  notice: /** @type {HTMLElement} */ (byId("notice")),
};

let apiKey = localStorage.getItem(KEY_STORAGE);
/** @type {number | null} */
let lastSeed = null;
/** Set while the form follows a job; `id` once the server accepted it. */
/** @type {{ id: string | null } | null} */
let running = null;
/** Whether the job list was loaded for the current key (it loads once the key unlocked the status). */
let jobsLoaded = false;
/** @type {any} */
let serverStatus = null;
let defaultsApplied = false;
/** Ids of the form fields the person changed: the model's defaults do not overwrite them. */
const edited = new Set();
el.form.addEventListener("input", (e) => edited.add(/** @type {HTMLElement} */ (e.target).id));

/** @param {unknown} err */
function showError(err) {
  el.error.hidden = err == null;
  el.error.textContent = err == null ? "" : err instanceof Error ? err.message : String(err);
}

/** @param {string} text */
const notice = (text) => (el.notice.textContent = text);

/** @returns {import("./lib/params.js").FormValues} */
function formValues() {
  return {
    prompt: el.prompt.value,
    negativePrompt: el.negativePrompt.value,
    size: el.size.value,
    steps: el.steps.value,
    guidance: el.guidance.value,
    sampler: el.sampler.value,
    seed: el.seed.value,
    n: el.n.value,
  };
}

/**
 * @param {HTMLSelectElement} select
 * @param {string} value
 * @param {string} [label]
 */
function ensureOption(select, value, label = value) {
  if (![...select.options].some((o) => o.value === value)) select.add(new Option(label, value));
}

/** @param {import("./lib/params.js").FormValues} v */
function setFormValues(v) {
  el.prompt.value = v.prompt;
  el.negativePrompt.value = v.negativePrompt;
  ensureOption(el.size, v.size);
  el.size.value = v.size;
  el.steps.value = v.steps;
  el.guidance.value = v.guidance;
  ensureOption(el.sampler, v.sampler);
  el.sampler.value = v.sampler;
  el.seed.value = v.seed;
  el.n.value = v.n;
}

/** Fills the size and sampler lists (and, once, the model's defaults) from `/ui/api/status`. */
function applyStatus(status) {
  serverStatus = status;
  if (!status) return;
  const { model, limits } = status;
  for (const s of model.sizes.length ? model.sizes : ["auto"]) ensureOption(el.size, s, s === model.nativeSize ? `${s} (native)` : s);
  const samplerDefault = model.defaults?.sampler;
  for (const s of model.samplers) ensureOption(el.sampler, s);
  el.sampler.options[0].textContent = samplerDefault ? `model default (${samplerDefault})` : "model default";
  el.steps.max = String(limits.maxSteps);
  el.n.max = String(limits.maxN);
  if (!jobsLoaded) {
    jobsLoaded = true;
    void jobs.reload();
  }
  if (defaultsApplied) return;
  defaultsApplied = true;
  // The model's defaults, where the person has not already chosen (a key given only at Generate loads them late).
  if (!edited.has("size")) el.size.value = model.nativeSize ?? el.size.options[0]?.value ?? "auto";
  if (model.defaults) {
    if (!edited.has("steps")) el.steps.value = String(model.defaults.steps);
    if (!edited.has("guidance")) el.guidance.value = String(model.defaults.guidance);
  }
}

const jobs = new JobList(
  { list: byId("gallery"), more: byId("load-more"), hint: byId("gallery-hint") },
  () => apiKey ?? "",
  () => serverStatus?.model.defaults ?? null,
  (params) => {
    setFormValues(toFormValues(params));
    notice(`Restored the parameters of “${params.prompt}” (seed ${params.seed}).`);
    el.prompt.focus();
  },
  showError,
);
const panel = new StatusPanel(() => apiKey ?? "", applyStatus, showError);

/** @param {boolean} on */
function setRunning(on) {
  el.generate.disabled = on;
  el.cancel.disabled = !on;
  el.progress.hidden = !on;
  if (on) {
    el.progressBar.removeAttribute("value"); // indeterminate until the first step
    el.progressText.textContent = "Sending the request…";
    el.preview.hidden = true;
    el.preview.removeAttribute("src");
  }
}

/**
 * Uses `key` from now on: kept in this browser, and the status panel polls with it.
 * @param {string} key
 */
function useKey(key) {
  apiKey = key;
  localStorage.setItem(KEY_STORAGE, apiKey);
  jobsLoaded = false; // another key may see other jobs: the list loads again with the next status
  panel.start();
}

async function generate() {
  if (running) return;
  // The key in the box is the one to send, saved or not (empty: none); Save key is not a required step.
  const typed = el.key.value.trim();
  if (typed !== apiKey) useKey(typed);
  // Never polled yet (no key until now): the sizes and samplers come from the server; a refused poll shows why.
  if (!serverStatus && !(await panel.refresh())) return;
  let parsed;
  try {
    parsed = parseForm(formValues(), serverStatus?.limits);
  } catch (err) {
    showError(err);
    if (err instanceof FieldError) byId(err.field === "negativePrompt" ? "negative-prompt" : err.field)?.focus();
    return;
  }
  const params = { ...parsed, seed: parsed.seed ?? randomSeed() };
  const job = { id: /** @type {string | null} */ (null) };
  running = job;
  showError(null);
  notice("");
  setRunning(true);
  try {
    // A prediction (kept in the server's store): it outlives this page, and the job list shows it after a reload.
    // `stream: true`: previews are made for it although its stream opens after the run may have started.
    const created = await postApi("/v1/predictions", { input: toPredictionInput(params), stream: true }, apiKey ?? "");
    job.id = created.id;
    el.progressText.textContent = "Accepted; waiting for the first step…";
    const final = await jobs.follow(created, (j) => {
      if (running !== job) return;
      if (j.p.queue_position) el.progressText.textContent = `Waiting in the queue: position ${j.p.queue_position}`;
      else if (j.progress) {
        el.progressBar.max = j.progress.total;
        el.progressBar.value = j.progress.step;
        el.progressText.textContent = `Step ${j.progress.step} of ${j.progress.total}`;
      }
      if (j.preview) {
        el.preview.src = j.preview;
        el.preview.hidden = false;
      }
    });
    if (final.status === "succeeded") {
      lastSeed = params.seed;
      el.seedReuse.disabled = false;
      const n = final.output?.length ?? 0;
      notice(`Done: ${n} image${n === 1 ? "" : "s"}, seed ${params.seed}.`);
    } else if (final.status === "canceled" || final.status === "aborted") notice("Cancelled.");
    else if (final.status === "failed") showError(new ApiError(final.error ?? "The generation failed", 0, null));
    else if (!isFinal(final.status)) notice("The job goes on on the server; the list shows it.");
  } catch (err) {
    showError(err instanceof ApiError || err instanceof Error ? err : String(err));
  } finally {
    running = null;
    setRunning(false);
    panel.start();
  }
}

el.form.addEventListener("submit", (e) => {
  e.preventDefault();
  void generate();
});
el.cancel.addEventListener("click", () => {
  if (running?.id) void jobs.cancel(running.id);
});
document.addEventListener("keydown", (e) => {
  if ((e.ctrlKey || e.metaKey) && e.key === "Enter") {
    e.preventDefault();
    void generate();
  }
});
el.seedRandom.addEventListener("click", () => (el.seed.value = ""));
el.seedReuse.addEventListener("click", () => {
  if (lastSeed !== null) el.seed.value = String(lastSeed);
});
el.keyForm.addEventListener("submit", (e) => {
  e.preventDefault();
  useKey(el.key.value.trim());
  showError(null);
  notice(apiKey ? "API key saved in this browser." : "No API key: requests go without one.");
});

if (apiKey === null) {
  notice("Enter the server's API key (leave it empty if it has none).");
  el.key.focus();
} else {
  el.key.value = apiKey;
  panel.start();
}
