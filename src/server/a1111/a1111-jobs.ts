import { createHash } from "node:crypto";
import type { GeneratedImage } from "../../core/output.js";
import type { StepProgress } from "../../core/progress.js";

/** A1111's `shared.state.dict()`, as `GET /sdapi/v1/progress` returns it. */
export interface A1111State {
  skipped: boolean;
  interrupted: boolean;
  stopping_generation: boolean;
  job: string;
  job_count: number;
  job_timestamp: string;
  job_no: number;
  sampling_step: number;
  sampling_steps: number;
}

/** `GET /sdapi/v1/progress`. */
export interface A1111Progress {
  progress: number;
  eta_relative: number;
  state: A1111State;
  current_image: string | null;
  textinfo: string | null;
  /** The running call's id (A1111 1.6+: the `task(...)` id of the job). */
  current_task: string | null;
}

/** `20240131235959`, the form of A1111's `job_timestamp`. */
export function jobTimestamp(d: Date): string {
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

/**
 * One `txt2img`/`img2img` call: its engine requests (one per `n_iter`), their progress, the latest preview of
 * each image (what an interrupted call returns, as A1111 returns its last decoded latents), and whether
 * `POST /interrupt` stopped it.
 */
export class A1111Job {
  readonly started = performance.now();
  readonly timestamp = jobTimestamp(new Date());
  #interrupted = false;
  readonly #steps = new Map<string, { step: number; total: number }>();
  readonly #done = new Set<string>();
  readonly #previews = new Map<string, GeneratedImage[]>();
  #last: { requestId: string; step: number; total: number } | null = null;

  /**
   * @param id the call's task id: the client's `force_task_id`, else the request id (`current_task`).
   * @param owner who may see and stop it ({@link jobOwner}).
   */
  constructor(
    readonly id: string,
    readonly kind: "txt2img" | "img2img",
    readonly requestIds: readonly string[],
    readonly plannedSteps: number,
    readonly abort: (requestId: string) => void,
    readonly owner = "",
  ) {}

  get interrupted(): boolean {
    return this.#interrupted;
  }

  /** The `onProgress` of one of the job's engine requests. */
  onProgress(p: StepProgress): void {
    this.#steps.set(p.requestId, { step: p.step, total: p.totalSteps });
    this.#last = { requestId: p.requestId, step: p.step, total: p.totalSteps };
    if (p.preview?.length) this.#previews.set(p.requestId, p.preview);
  }

  /** Marks one engine request finished (images or error). */
  finished(requestId: string): void {
    this.#done.add(requestId);
  }

  /** The latest preview images of a request, or none. */
  previews(requestId: string): GeneratedImage[] {
    return this.#previews.get(requestId) ?? [];
  }

  /** Stops every request of the job at its next step (queued ones are dropped). */
  interrupt(): void {
    if (this.#interrupted) return;
    this.#interrupted = true;
    for (const id of this.requestIds) if (!this.#done.has(id)) this.abort(id);
  }

  /** A1111's progress formula: 0.01 + finished iterations + the running ones' step fractions, over the iterations. */
  progress(includeImage: boolean, encode: (img: GeneratedImage) => string): A1111Progress {
    const count = this.requestIds.length;
    let fraction = 0;
    for (const id of this.requestIds) {
      if (this.#done.has(id)) fraction += 1;
      else {
        const s = this.#steps.get(id);
        if (s && s.total > 0) fraction += s.step / s.total;
      }
    }
    const progress = Math.min(1, 0.01 + fraction / count);
    const elapsed = (performance.now() - this.started) / 1000;
    const running = this.requestIds.find((id) => !this.#done.has(id) && this.#previews.has(id)) ?? this.#last?.requestId;
    const image = includeImage && running ? this.#previews.get(running)?.[0] : undefined;
    return {
      progress,
      eta_relative: Math.max(0, elapsed / progress - elapsed),
      state: {
        skipped: false,
        interrupted: this.#interrupted,
        stopping_generation: false,
        job: this.kind,
        job_count: count,
        job_timestamp: this.timestamp,
        job_no: this.#done.size,
        sampling_step: this.#last?.step ?? 0,
        sampling_steps: this.#last?.total ?? this.plannedSteps,
      },
      current_image: image ? encode(image) : null,
      textinfo: null,
      current_task: this.id,
    };
  }
}

/**
 * Who a call belongs to: its credentials (the whole `Authorization` value, so two Basic user names sharing
 * the key are two owners) and its client address, hashed so no credential is kept in the clear.
 */
export function jobOwner(authorization: string | undefined, address: string | undefined): string {
  const ip = (address ?? "").replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, "");
  return createHash("sha256").update(`${(authorization ?? "").trim()}\n${ip}`, "utf8").digest("hex");
}

/**
 * The A1111 calls in flight, oldest first. A1111 runs one job at a time; this server runs them side by side
 * (the engine batches them), so `progress` and `interrupt` act on the oldest call still running, among the
 * caller's own ({@link jobOwner}): one client must not watch or stop another's job. `shared` restores A1111's
 * view (everyone's calls, `serve --a1111-shared-progress`). A task id (`id_task`, the `force_task_id` the
 * call was sent with) picks one call instead of the oldest.
 */
export class A1111Jobs {
  readonly #jobs: A1111Job[] = [];

  constructor(readonly shared = false) {}

  /** Registers a job; returns the function that removes it. */
  add(job: A1111Job): () => void {
    this.#jobs.push(job);
    return () => {
      const i = this.#jobs.indexOf(job);
      if (i >= 0) this.#jobs.splice(i, 1);
    };
  }

  /** The job `progress` reports and `interrupt` stops for `caller` (and `taskId`, when given), or null. */
  current(caller: string, taskId?: string | null): A1111Job | null {
    const visible = this.shared ? this.#jobs : this.#jobs.filter((j) => j.owner === caller);
    if (taskId) return visible.find((j) => j.id === taskId) ?? null;
    return visible[0] ?? null;
  }

  /** Jobs in flight. */
  get size(): number {
    return this.#jobs.length;
  }
}

/** `GET /sdapi/v1/progress` with nothing running: A1111's idle answer. */
export function idleProgress(): A1111Progress {
  return {
    progress: 0,
    eta_relative: 0,
    state: { skipped: false, interrupted: false, stopping_generation: false, job: "", job_count: 0, job_timestamp: "0", job_no: 0, sampling_step: 0, sampling_steps: 0 },
    current_image: null,
    textinfo: null,
    current_task: null,
  };
}
