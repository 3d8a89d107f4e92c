import { DiffusionOutput, type GeneratedImage, type StageMetrics } from "../core/output.js";
import type { OmniDiffusionRequest } from "../core/request.js";
import type { BatchingPolicy } from "../core/config.js";
import { rowsOfRequest } from "../core/limits.js";
import type { StepProgress } from "../core/progress.js";
import { AbortedError, OmniError, toOmniError } from "../errors/omni-error.js";
import { abortedAt, denoiseFailure, isFinished, rowsOf, shapeKey, trajectoriesOf, type DenoiseState, type ResolvedParams } from "./denoise-state.js";
import type { SteppablePipeline, UnetCall } from "./types.js";

/** Options of one {@link StepLoop.run} call (one generate call). */
export interface StepLoopRunOptions {
  onProgress?: (p: StepProgress) => void;
  /** Request id → decode a preview every N steps into the progress event. */
  previewEvery?: Readonly<Record<string, number>>;
  /** Checked between steps: the request leaves with an AbortedError naming its step. */
  isAborted?: (requestId: string) => boolean;
  /** Aborts every request of the call between steps; an OmniError reason (a TimeoutError) is what they get. */
  signal?: AbortSignal;
}

/** A request whose model defaults were applied and checked once ({@link SteppablePipeline.resolve}). */
export interface ResolvedRequest {
  readonly request: OmniDiffusionRequest;
  readonly params: ResolvedParams;
}

/**
 * Where the loop's time went since it was built, in ms (the `getStats` RPC reports it; bench/batching.ts
 * prints it). `stepMs - unetMs` is the samplers' math and tensor building around the UNet.
 */
export interface StepLoopStats {
  iterations: number;
  unetCalls: number;
  unetRows: number;
  /** Inside the UNet session (when the pipeline reports it; else equal to the whole step). */
  unetMs: number;
  /** Inside `pipeline.step`: the UNet plus the samplers' math. */
  stepMs: number;
  /** Text encoding and noise of joining requests (`pipeline.prepare`). */
  encodeTextMs: number;
  /** VAE decode of finished requests. */
  decodeMs: number;
  /** VAE decode of previews. */
  previewMs: number;
  /** Progress callbacks (serialising and sending progress to the parent, in a worker process). */
  progressMs: number;
  /** Inside iterations (the sum of the above plus the loop's own bookkeeping). */
  busyMs: number;
}

/** One request in the loop, from arrival to its output. */
interface Ticket {
  readonly request: OmniDiffusionRequest;
  readonly params: ResolvedParams;
  readonly rows: number;
  readonly opts: StepLoopRunOptions;
  /** The {@link StepLoop.run} call it came with: `request` admission takes a call's tickets together. */
  readonly call: number;
  readonly receivedAt: number;
  readonly done: (out: DiffusionOutput) => void;
  state: DenoiseState | null;
  admittedAt: number;
  encodeTextMs: number;
  firstStepAt: number;
  lastStepAt: number;
}

/** Runs `fn` when no other exclusive pipeline work (sleep, wakeUp, close) is running. */
export type Exclusive = <T>(fn: () => Promise<T>) => Promise<T>;

const yieldToEventLoop = () => new Promise<void>((r) => setImmediate(r));
const now = () => performance.now();

/**
 * The one denoise driver: an active set of request states, advanced one denoising step per iteration in
 * one UNet call over every state of the same latent shape. The batching policy is only its admission rule:
 *
 * - `continuous`: requests join at the next iteration, FIFO, while the active set stays within
 *   `maxBatchRows` UNet rows (a request bigger than that runs alone); the head of the queue is never
 *   bypassed, so a large request cannot be starved by a stream of small ones.
 * - `request`: the requests of one {@link run} call join together, once the active set is empty; the next
 *   call waits until every one of them finished (request-level batching: `step` splits at `maxBatchRows`).
 * - `none`: one request at a time.
 *
 * Finished states are decoded and answered at once; aborted ones (and ones past their call's deadline)
 * leave between steps. Every state keeps its own scheduler, step count and noise stream, so a request's
 * images do not depend on who else was in the crowd. With several latent shapes active, each iteration
 * steps one shape group: the one with the largest rows × (1 + iterations it was skipped), so big groups go
 * first and a skipped group's claim grows until it is served. Each iteration runs under `exclusive`, so
 * sleep/wakeUp/close slot in between steps.
 */
export class StepLoop {
  readonly #pipeline: SteppablePipeline;
  readonly #exclusive: Exclusive;
  readonly #maxRows: number;
  readonly #admission: BatchingPolicy;
  #pending: Ticket[] = [];
  #active: Ticket[] = [];
  #skipped = new Map<string, number>();
  #running = false;
  #calls = 0;
  #idleWaiters: (() => void)[] = [];
  readonly #stats: StepLoopStats = { iterations: 0, unetCalls: 0, unetRows: 0, unetMs: 0, stepMs: 0, encodeTextMs: 0, decodeMs: 0, previewMs: 0, progressMs: 0, busyMs: 0 };

  constructor(pipeline: SteppablePipeline, opts: { maxBatchRows: number; admission?: BatchingPolicy; exclusive?: Exclusive }) {
    this.#pipeline = pipeline;
    this.#maxRows = opts.maxBatchRows;
    this.#admission = opts.admission ?? "continuous";
    this.#exclusive = opts.exclusive ?? ((fn) => fn());
  }

  /** The admission rule (`continuous`, `request` or `none`). */
  get admission(): BatchingPolicy {
    return this.#admission;
  }

  /** Requests waiting to join, and requests being denoised. */
  get size(): { pending: number; active: number } {
    return { pending: this.#pending.length, active: this.#active.length };
  }

  /** A copy of the time counters. */
  get stats(): StepLoopStats {
    return { ...this.#stats };
  }

  /**
   * Adds the requests (resolved once by the caller) to the loop and resolves once every one of them has
   * finished (images or error).
   */
  async run(requests: readonly ResolvedRequest[], opts: StepLoopRunOptions = {}): Promise<DiffusionOutput> {
    const call = ++this.#calls;
    const receivedAt = now();
    const outputs = requests.map(
      ({ request, params }) =>
        new Promise<DiffusionOutput>((done) => {
          const rows = rowsOfRequest({ numOutputsPerPrompt: params.numOutputs, guidanceScale: params.guidanceScale });
          this.#pending.push({ request, params, rows, opts, call, receivedAt, done, state: null, admittedAt: 0, encodeTextMs: 0, firstStepAt: 0, lastStepAt: 0 });
        }),
    );
    this.#kick();
    return DiffusionOutput.merge(await Promise.all(outputs));
  }

  /** Resolves once no request is waiting or running. */
  idle(): Promise<void> {
    if (!this.#running) return Promise.resolve();
    return new Promise<void>((r) => this.#idleWaiters.push(r));
  }

  #kick(): void {
    if (this.#running || (!this.#pending.length && !this.#active.length)) return;
    this.#running = true;
    void this.#loop();
  }

  async #loop(): Promise<void> {
    try {
      // The first step waits one turn of the event loop: requests that arrived together (one engine.step, a
      // burst of clients, read from the IPC channel in one go) then start together, instead of the first
      // running a step alone and the rest following a step behind it (one more UNet call for the batch).
      await yieldToEventLoop();
      while (this.#pending.length || this.#active.length) {
        await this.#exclusive(() => this.#iteration());
        // Lets new generate calls, aborts and pings in between steps.
        await yieldToEventLoop();
      }
    } catch (err) {
      // #iteration handles every request's own failure; reaching here is a bug, but no caller may hang on it.
      const e = toOmniError(err);
      for (const t of [...this.#pending, ...this.#active]) this.#fail(t, e);
    } finally {
      this.#running = false;
      for (const w of this.#idleWaiters.splice(0)) w();
    }
  }

  async #iteration(): Promise<void> {
    const t0 = now();
    this.#stats.iterations++;
    try {
      await this.#stepOnce();
    } finally {
      this.#stats.busyMs += now() - t0;
    }
  }

  async #stepOnce(): Promise<void> {
    for (const t of [...this.#pending, ...this.#active]) {
      const e = this.#stopError(t);
      if (e) this.#fail(t, e);
    }
    await this.#admit();
    const group = this.#pickGroup();
    if (!group.length) return;
    let calls: UnetCall[];
    const t0 = now();
    try {
      calls = await this.#pipeline.step(group.map((t) => t.state!));
    } catch (err) {
      // A pipeline that does not isolate its states threw for the whole call: they may be half-stepped, so
      // none can be retried; each fails with an internal error, never a client's 4xx.
      for (const t of group) this.#fail(t, denoiseFailure(t.state!, err));
      return;
    } finally {
      this.#stats.stepMs += now() - t0;
    }
    // The pipeline's own isolation: a state whose step failed carries its error, the others stepped.
    for (const t of group) if (t.state!.error) this.#fail(t, t.state!.error);
    const stepped = now();
    const byState = new Map(group.map((t) => [t.state!, t]));
    for (const call of calls) {
      this.#stats.unetCalls++;
      this.#stats.unetRows += call.rows;
      this.#stats.unetMs += call.unetMs ?? call.ms;
      for (const [i, s] of call.states.entries()) {
        const t = byState.get(s)!;
        if (t.firstStepAt === 0) t.firstStepAt = stepped;
        t.lastStepAt = stepped;
        await this.#report(t, { rows: call.rows, requests: call.states.length, ms: call.ms, primary: i === 0 });
      }
    }
    await this.#decodeFinished();
  }

  /** The waiting requests the admission rule lets in now. */
  #joining(): Ticket[] {
    if (!this.#pending.length) return [];
    if (this.#admission === "none") return this.#active.length ? [] : [this.#pending.shift()!];
    if (this.#admission === "request") {
      if (this.#active.length) return [];
      const call = this.#pending[0]!.call;
      const joining = this.#pending.filter((t) => t.call === call);
      this.#pending = this.#pending.filter((t) => t.call !== call);
      return joining;
    }
    let rows = this.#active.reduce((a, t) => a + rowsOf(t.state!), 0);
    const joining: Ticket[] = [];
    while (this.#pending.length) {
      const next = this.#pending[0]!;
      if ((this.#active.length || joining.length) && rows + next.rows > this.#maxRows) break;
      joining.push(this.#pending.shift()!);
      rows += next.rows;
    }
    return joining;
  }

  /** Moves the admitted requests into the active set; one text-encoder call for all of them. */
  async #admit(): Promise<void> {
    const joining = this.#joining();
    if (!joining.length) return;
    const t0 = now();
    try {
      const states = await this.#pipeline.prepare(
        joining.map((t) => t.request),
        joining.map((t) => t.params),
      );
      const ms = now() - t0;
      joining.forEach((t, i) => {
        t.state = states[i]!;
        t.admittedAt = t0;
        t.encodeTextMs = ms;
      });
      this.#active.push(...joining);
    } catch (err) {
      for (const t of joining) this.#fail(t, denoiseFailure({ request: t.request, params: t.params, stepIndex: 0, timesteps: [] }, err, "prepare"));
    } finally {
      this.#stats.encodeTextMs += now() - t0;
    }
  }

  /** The shape group to step now: largest rows × (1 + times skipped); ties go to the group of the oldest request. */
  #pickGroup(): Ticket[] {
    const groups = new Map<string, Ticket[]>();
    for (const t of this.#active) {
      if (isFinished(t.state!)) continue;
      const key = shapeKey(t.state!);
      const g = groups.get(key);
      if (g) g.push(t);
      else groups.set(key, [t]);
    }
    if (groups.size <= 1) {
      this.#skipped.clear();
      return groups.values().next().value ?? [];
    }
    let best: { key: string; score: number } | null = null;
    for (const [key, ts] of groups) {
      const score = ts.reduce((a, t) => a + rowsOf(t.state!), 0) * (1 + (this.#skipped.get(key) ?? 0));
      if (!best || score > best.score) best = { key, score };
    }
    const skipped = new Map<string, number>();
    for (const key of groups.keys()) if (key !== best?.key) skipped.set(key, (this.#skipped.get(key) ?? 0) + 1);
    this.#skipped = skipped;
    return groups.get(best!.key)!;
  }

  async #report(t: Ticket, batch: StepProgress["batch"]): Promise<void> {
    const { onProgress, previewEvery } = t.opts;
    if (!onProgress) return;
    const s = t.state!;
    const every = previewEvery?.[s.request.requestId] ?? 0;
    const p: StepProgress = { requestId: s.request.requestId, step: s.stepIndex, totalSteps: s.timesteps.length, batch };
    if (every > 0 && s.stepIndex % every === 0 && s.stepIndex < s.timesteps.length) {
      const t0 = now();
      try {
        p.preview = (await this.#pipeline.decode([s], true))[0];
      } catch (err) {
        // A preview is a courtesy: its failure must not fail the request.
        process.emitWarning(`preview of ${s.request.requestId} failed: ${toOmniError(err).message}`);
      } finally {
        this.#stats.previewMs += now() - t0;
      }
    }
    const t0 = now();
    try {
      onProgress(p);
    } catch (err) {
      process.emitWarning(`onProgress callback threw: ${toOmniError(err).message}`);
    } finally {
      this.#stats.progressMs += now() - t0;
    }
  }

  /** Decodes every state that just finished, in one VAE call per shape, and answers each at once. */
  async #decodeFinished(): Promise<void> {
    const finished = this.#active.filter((t) => isFinished(t.state!));
    if (!finished.length) return;
    this.#active = this.#active.filter((t) => !isFinished(t.state!));
    const t0 = now();
    let images: GeneratedImage[][];
    try {
      images = await this.#pipeline.decode(finished.map((t) => t.state!));
    } catch (err) {
      for (const t of finished) this.#fail(t, denoiseFailure(t.state!, err, "decode"));
      return;
    } finally {
      this.#stats.decodeMs += now() - t0;
    }
    const decodeMs = now() - t0;
    finished.forEach((t, i) => {
      const s = t.state!;
      t.done(new DiffusionOutput({ output: images[i]!, ...trajectoriesOf([s]), metrics: { ...this.#metrics(t), decodeMs, totalMs: now() - t.receivedAt } }));
    });
  }

  #stopError(t: Ticket): OmniError | null {
    const id = t.request.requestId;
    const { isAborted, signal } = t.opts;
    const aborted = isAborted?.(id) ?? false;
    if (!aborted && !signal?.aborted) return null;
    if (!aborted && signal?.reason instanceof OmniError) return signal.reason;
    if (t.state) return abortedAt(t.state);
    return new AbortedError(`request ${id} was aborted before it started`, { data: { requestId: id, step: 0 } });
  }

  /** Takes the request out of the loop and answers it with `error`. */
  #fail(t: Ticket, error: OmniError): void {
    this.#pending = this.#pending.filter((x) => x !== t);
    this.#active = this.#active.filter((x) => x !== t);
    if (t.state) t.state.error = error;
    t.done(new DiffusionOutput({ errors: { [t.request.requestId]: error }, metrics: { ...this.#metrics(t), totalMs: now() - t.receivedAt } }));
  }

  #metrics(t: Ticket): StageMetrics {
    if (!t.admittedAt) return { workerQueueMs: now() - t.receivedAt };
    const m: StageMetrics = { workerQueueMs: t.admittedAt - t.receivedAt, encodeTextMs: t.encodeTextMs };
    if (t.firstStepAt) {
      m.firstStepMs = t.firstStepAt - t.receivedAt;
      m.denoiseMs = t.lastStepAt - (t.admittedAt + t.encodeTextMs);
    }
    return m;
  }
}
