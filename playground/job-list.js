// @ts-check
import { ApiError, getApi, postApi } from "./lib/api.js";
import { describeParams } from "./lib/params.js";
import { describeState, isFinal, paramsFromInput, pathOf, progressOf } from "./lib/predictions.js";
import { readSse } from "./lib/sse.js";

/** @typedef {import("./lib/predictions.js").Prediction} Prediction */
/** @typedef {import("./lib/params.js").GenerationParams} GenerationParams */

/** How often a waiting job (or a running one without a stream) is polled, ms. */
const POLL_MS = 250;
/** Streams open at once for the list: a browser allows 6 connections per host, the page's other calls need some. */
const MAX_STREAMS = 2;
/** Polls per POLL_MS the list's other jobs share at most: a page of 100 queued jobs must not flood the server. */
const MAX_POLLS = 4;

/** @param {number} ms @param {AbortSignal} signal resolves after `ms`, or at once when `signal` aborts */
const delay = (ms, signal) =>
  new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve(undefined);
    }
    signal.addEventListener("abort", done, { once: true });
  });

/** An image URL of ours as a data URL: what the page shows and downloads (the same bytes, kept with the page). */
async function dataUrl(/** @type {string} */ url) {
  const res = await fetch(pathOf(url));
  if (!res.ok) throw new ApiError(`image unavailable (HTTP ${res.status})`, res.status, null);
  const blob = await res.blob();
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(String(r.result));
    r.onerror = () => reject(r.error);
    r.readAsDataURL(blob);
  });
}

/** One job of the list: its latest prediction, its progress, its row. */
class Job {
  /** @param {Prediction} p */
  constructor(p) {
    this.p = p;
    this.progress = progressOf(p.logs ?? "");
    /** @type {string | null} */
    this.preview = null;
    /** The page follows it in the form: it always gets a stream. */
    this.followed = false;
    /** Whether its stream was read (a run that ended before it was opened still shows its last preview). */
    this.streamed = false;
    this.ctrl = new AbortController();
    /** @type {Set<(job: Job) => void>} */
    this.listeners = new Set();
    /** @type {(p: Prediction) => void} */
    this.resolveFinal = () => {};
    /** Resolves with the prediction once it is final and its images are on the page (or the list let it go). */
    this.final = new Promise((resolve) => (this.resolveFinal = resolve));
    this.li = document.createElement("li");
    this.li.dataset.testid = "job";
    this.li.dataset.id = p.id;
    this.li.dataset.created = p.created_at;
    const figure = document.createElement("figure");
    this.restore = document.createElement("button");
    this.restore.type = "button";
    this.restore.className = "restore";
    this.restore.title = "Restore these parameters";
    this.previewImg = document.createElement("img");
    this.previewImg.dataset.testid = "job-preview";
    this.previewImg.alt = "Preview of the image being generated";
    this.previewImg.hidden = true;
    const caption = document.createElement("figcaption");
    this.prompt = document.createElement("strong");
    this.params = document.createElement("span");
    this.state = document.createElement("span");
    this.state.className = "job-state";
    this.state.dataset.testid = "job-status";
    caption.append(this.prompt, this.params, this.state);
    this.links = document.createElement("div");
    this.cancel = document.createElement("button");
    this.cancel.type = "button";
    this.cancel.className = "job-cancel";
    this.cancel.dataset.testid = "job-cancel";
    this.cancel.textContent = "Cancel";
    this.links.append(this.cancel);
    figure.append(this.restore, this.previewImg, caption, this.links);
    this.li.append(figure);
  }
}

/**
 * The gallery: the server's jobs (`GET /v1/predictions`, newest first, "Load more" for older pages), so it
 * survives a reload. Each waiting or running job shows its status, queue position and progress (polled while
 * it waits, then its `urls.stream`), and a Cancel button (`POST /v1/predictions/{id}/cancel`); a finished one
 * shows its images, restorable and downloadable.
 */
export class JobList {
  /**
   * @param {{ list: HTMLUListElement, more: HTMLButtonElement, hint: HTMLElement }} els
   * @param {() => string} getKey
   * @param {() => { steps: number, guidance: number } | null} getDefaults the model's defaults, for inputs that left them out
   * @param {(p: GenerationParams) => void} onRestore
   * @param {(err: unknown) => void} onError a cancel the server refused
   */
  constructor(els, getKey, getDefaults, onRestore, onError) {
    this.els = els;
    this.getKey = getKey;
    this.getDefaults = getDefaults;
    this.onRestore = onRestore;
    this.onError = onError;
    /** @type {Map<string, Job>} */
    this.jobs = new Map();
    /** @type {string | null} */
    this.next = null;
    this.generation = 0;
    this.streams = 0;
    /** Jobs of the list being polled now (not the followed one). */
    this.polled = 0;
    els.more.addEventListener("click", () => void this.loadMore());
  }

  /** Forgets what is shown and loads the newest page again (a new key may see other jobs). */
  reload() {
    for (const job of this.jobs.values()) {
      job.ctrl.abort();
      job.resolveFinal(job.p);
    }
    this.jobs.clear();
    this.els.list.replaceChildren();
    this.next = null;
    this.els.more.hidden = true;
    return this.#loadPage("/v1/predictions", ++this.generation);
  }

  loadMore() {
    return this.next ? this.#loadPage(this.next, this.generation) : Promise.resolve();
  }

  /**
   * Shows a job the page just created and follows it; resolves with it once final, its images shown.
   * @param {Prediction} p
   * @param {(job: Job) => void} onUpdate each change of its state, progress or preview
   */
  follow(p, onUpdate) {
    const job = this.#upsert(p, true);
    job.followed = true;
    job.listeners.add(onUpdate);
    onUpdate(job); // the state the list already shows (a create answer may carry a queue position)
    return job.final;
  }

  /** Cancels job `id` on the server. */
  async cancel(/** @type {string} */ id) {
    try {
      this.#upsert(await postApi(`/v1/predictions/${encodeURIComponent(id)}/cancel`, undefined, this.getKey()));
    } catch (err) {
      this.onError(err);
    }
  }

  /** @param {string} path @param {number} generation */
  async #loadPage(path, generation) {
    this.els.more.disabled = true;
    try {
      const page = await getApi(path, this.getKey());
      if (generation !== this.generation) return;
      for (const p of page.results) this.#upsert(p);
      this.next = page.next ? pathOf(page.next) : null;
      this.els.hint.textContent = "Click an image to restore its parameters.";
    } catch (err) {
      if (generation === this.generation) this.els.hint.textContent = `The jobs could not be loaded: ${err instanceof Error ? err.message : String(err)}`;
    } finally {
      this.els.more.disabled = false;
      this.els.more.hidden = !this.next;
    }
  }

  /** Adds `p`'s job, or updates it; a final state is never replaced by an older, pending one. */
  #upsert(/** @type {Prediction} */ p, first = false) {
    let job = this.jobs.get(p.id);
    if (job) {
      if (!isFinal(job.p.status)) this.#apply(job, p);
      return job;
    }
    job = new Job(p);
    this.jobs.set(p.id, job);
    this.#insert(job, first);
    const params = paramsFromInput(p.input, this.getDefaults());
    job.prompt.textContent = params.prompt;
    job.params.textContent = describeParams(params);
    job.restore.setAttribute("aria-label", `Restore the parameters of “${params.prompt}”`);
    job.restore.addEventListener("click", () => this.onRestore(paramsFromInput(p.input, this.getDefaults())));
    job.cancel.addEventListener("click", () => void this.cancel(p.id));
    this.#render(job);
    void this.#watch(job);
    return job;
  }

  /** Newest first by creation time; a job the page just made goes above any made in the same millisecond. */
  #insert(/** @type {Job} */ job, first = false) {
    const mine = job.p.created_at;
    const after = [...this.els.list.children].find((li) => {
      const theirs = /** @type {HTMLElement} */ (li).dataset.created ?? "";
      return first ? theirs <= mine : theirs < mine;
    });
    this.els.list.insertBefore(job.li, after ?? null);
  }

  /** @param {Job} job @param {Prediction} p */
  #apply(job, p) {
    job.p = p;
    job.progress = progressOf(p.logs ?? "") ?? job.progress;
    this.#render(job);
  }

  /** @param {Job} job */
  #render(job) {
    const { p } = job;
    job.li.dataset.status = p.status;
    const final = isFinal(p.status);
    job.state.textContent = p.status === "succeeded" ? "" : describeState(p, job.progress);
    job.cancel.hidden = final;
    job.previewImg.hidden = final || !job.preview;
    if (job.preview && !final) job.previewImg.src = job.preview;
    for (const fn of job.listeners) fn(job);
  }

  /** Polls the job while it waits, streams it while it runs, until it is final; then shows its images. */
  async #watch(/** @type {Job} */ job) {
    const { signal } = job.ctrl;
    while (!isFinal(job.p.status) && !signal.aborted) {
      const waiting = job.p.status === "starting" || !!job.p.queue_position;
      if (!waiting && (job.followed || this.streams < MAX_STREAMS)) {
        this.streams++;
        // A started job may still wait in the engine's queue, which its stream does not tell: poll until it steps.
        const side = new AbortController();
        const polling = this.#pollUntilStepping(job, side.signal);
        try {
          await this.#stream(job, signal);
        } catch {
          await delay(POLL_MS, signal); // a dropped stream: look again, then reconnect
        } finally {
          this.streams--;
          side.abort();
          await polling;
        }
      } else if (job.followed) await delay(POLL_MS, signal);
      else {
        this.polled++;
        await delay(POLL_MS * Math.max(1, Math.ceil(this.polled / MAX_POLLS)), signal);
        this.polled--;
      }
      if (!signal.aborted) await this.#refresh(job, signal);
    }
    if (signal.aborted) return;
    // The page's own job ended before its stream was opened (a fast run): read it once for the last preview.
    if (job.followed && !job.streamed) await this.#stream(job, signal).catch(() => undefined);
    await this.#showOutput(job);
    job.resolveFinal(job.p);
  }

  /** Polls `job` while it has made no step yet (its queue position may change), until `signal` aborts. */
  async #pollUntilStepping(/** @type {Job} */ job, /** @type {AbortSignal} */ signal) {
    while (!signal.aborted && !job.progress && !isFinal(job.p.status)) {
      await delay(POLL_MS, signal);
      if (!signal.aborted) await this.#refresh(job, signal);
    }
  }

  /** @param {Job} job @param {AbortSignal} signal */
  async #refresh(job, signal) {
    try {
      const p = await getApi(`/v1/predictions/${encodeURIComponent(job.p.id)}`, this.getKey(), { signal });
      if (!isFinal(job.p.status)) this.#apply(job, p);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        // Deleted on the server (--job-ttl): gone from the list too.
        job.ctrl.abort();
        job.li.remove();
        this.jobs.delete(job.p.id);
        job.resolveFinal(job.p);
      }
      // Anything else (a network blip): the next look tries again.
    }
  }

  /** Reads the job's `urls.stream` until its `done` event: progress from the logs, the previews. */
  async #stream(/** @type {Job} */ job, /** @type {AbortSignal} */ signal) {
    job.streamed = true;
    const res = await fetch(pathOf(job.p.urls.stream), { signal });
    if (!res.ok || !res.body) throw new ApiError(`the job's stream answered HTTP ${res.status}`, res.status, null);
    for await (const ev of readSse(res.body)) {
      if (ev.event === "logs") {
        const progress = progressOf(ev.data);
        if (progress) {
          job.progress = progress;
          this.#render(job);
        }
      } else if (ev.event === "preview") {
        job.preview = ev.data;
        this.#render(job);
      } else if (ev.event === "done") return;
    }
  }

  /** The images of a succeeded job, as data URLs, decoded before this resolves. */
  async #showOutput(/** @type {Job} */ job) {
    const { p } = job;
    this.#render(job);
    if (p.status !== "succeeded" || !p.output) return;
    const params = paramsFromInput(p.input, this.getDefaults());
    const many = p.output.length > 1;
    await Promise.all(
      p.output.map(async (url, i) => {
        try {
          const src = await dataUrl(url);
          const img = document.createElement("img");
          img.src = src;
          img.alt = params.prompt;
          img.dataset.testid = "result-image";
          await img.decode().catch(() => {});
          const a = document.createElement("a");
          a.href = src;
          a.download = `omni-diffusion-${params.seed ?? "random"}-${i}.png`;
          a.textContent = many ? `PNG ${i + 1}` : "Download PNG";
          return { img, a };
        } catch (err) {
          const a = document.createElement("span");
          a.textContent = err instanceof Error ? err.message : String(err);
          return { img: null, a };
        }
      }),
    ).then((shown) => {
      for (const { img, a } of shown) {
        if (img) job.restore.append(img);
        job.links.insertBefore(a, job.cancel);
      }
    });
  }
}
