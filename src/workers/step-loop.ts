import { DiffusionOutput, type GeneratedImage, type StageMetrics } from "../core/output.js";
import type { OmniDiffusionRequest } from "../core/request.js";
import { AbortedError, OmniError, toOmniError } from "../errors/omni-error.js";
import { abortedAt, denoiseFailure, isFinished, rowsOf, shapeKey, trajectoriesOf, type DenoiseState, type ResolvedParams } from "../pipelines/denoise-state.js";
import type { SteppablePipeline, UnetCall } from "../pipelines/types.js";
import type { StepProgress } from "../core/progress.js";

/** Options of one {@link StepLoop.run} call (one generate RPC). */
export interface StepLoopRunOptions {
  onProgress?: (p: StepProgress) => void;
  /** Request id → decode a preview every N steps into the progress event. */
  previewEvery?: Readonly<Record<string, number>>;
  /** Checked between steps: the request leaves with an AbortedError naming its step. */
  isAborted?: (requestId: string) => boolean;
  /** Aborts every request of the call between steps; an OmniError reason (a TimeoutError) is what they get. */
  signal?: AbortSignal;
}

/** One request in the loop, from arrival to its output. */
interface Ticket {
  readonly request: OmniDiffusionRequest;
  readonly params: ResolvedParams;
  readonly rows: number;
  readonly opts: StepLoopRunOptions;
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

/**
 * Continuous (step-level) batching inside one worker: an active set of request states, advanced one
 * denoising step per iteration in one UNet call over every state of the same latent shape.
 *
 * - Requests join at the next iteration, FIFO, while the active set stays within `maxBatchRows` UNet rows
 *   (a request bigger than that runs alone); the head of the queue is never bypassed, so a large request
 *   cannot be starved by a stream of small ones.
 * - Finished states are decoded and answered at once; aborted ones (and ones past their call's deadline)
 *   leave between steps. Every state keeps its own scheduler, step count and noise stream, so a request's
 *   images do not depend on who else was in the crowd.
 * - With several latent shapes active, each iteration steps one shape group: the one with the largest
 *   rows × (1 + iterations it was skipped), so big groups go first and a skipped group's claim grows until
 *   it is served (after at most `maxBatchRows` iterations).
 * - Each iteration runs under `exclusive`, so sleep/wakeUp/close slot in between steps.
 */
export class StepLoop {
  readonly #pipeline: SteppablePipeline;
  readonly #exclusive: Exclusive;
  readonly #maxRows: number;
  #pending: Ticket[] = [];
  #active: Ticket[] = [];
  #skipped = new Map<string, number>();
  #running = false;
  #idleWaiters: (() => void)[] = [];

  constructor(pipeline: SteppablePipeline, opts: { maxBatchRows: number; exclusive: Exclusive }) {
    this.#pipeline = pipeline;
    this.#maxRows = opts.maxBatchRows;
    this.#exclusive = opts.exclusive;
  }

  /** Requests waiting to join, and requests being denoised. */
  get size(): { pending: number; active: number } {
    return { pending: this.#pending.length, active: this.#active.length };
  }

  /**
   * Adds the requests to the loop and resolves once every one of them has finished (images or error).
   * A request the pipeline refuses (bad size, unknown scheduler) gets its ValidationError in `errors`.
   */
  async run(requests: OmniDiffusionRequest[], opts: StepLoopRunOptions = {}): Promise<DiffusionOutput> {
    const errors: Record<string, OmniError> = {};
    const outputs: Promise<DiffusionOutput>[] = [];
    for (const request of requests) {
      let params: ResolvedParams;
      try {
        params = this.#pipeline.resolve(request);
      } catch (err) {
        errors[request.requestId] = toOmniError(err);
        continue;
      }
      const guided = params.guidanceScale > 1 ? 2 : 1; // an upper bound: guidance-distilled models use one row
      outputs.push(
        new Promise<DiffusionOutput>((done) => {
          this.#pending.push({ request, params, rows: params.numOutputs * guided, opts, receivedAt: performance.now(), done, state: null, admittedAt: 0, encodeTextMs: 0, firstStepAt: 0, lastStepAt: 0 });
        }),
      );
    }
    this.#kick();
    const parts = await Promise.all(outputs);
    return DiffusionOutput.merge([...parts, new DiffusionOutput({ errors })]);
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
    for (const t of [...this.#pending, ...this.#active]) {
      const e = this.#stopError(t);
      if (e) this.#fail(t, e);
    }
    await this.#admit();
    const group = this.#pickGroup();
    if (!group.length) return;
    let calls: UnetCall[];
    try {
      calls = await this.#pipeline.step(group.map((t) => t.state!));
    } catch (err) {
      // A pipeline that does not isolate its states threw for the whole call: they may be half-stepped, so
      // none can be retried; each fails with an internal error, never a client's 4xx.
      for (const t of group) this.#fail(t, denoiseFailure(t.state!, err));
      return;
    }
    // The pipeline's own isolation: a state whose step failed carries its error, the others stepped.
    for (const t of group) if (t.state!.error) this.#fail(t, t.state!.error);
    const now = performance.now();
    const byState = new Map(group.map((t) => [t.state!, t]));
    for (const call of calls) {
      for (const [i, s] of call.states.entries()) {
        const t = byState.get(s)!;
        if (t.firstStepAt === 0) t.firstStepAt = now;
        t.lastStepAt = now;
        await this.#report(t, { rows: call.rows, requests: call.states.length, ms: call.ms, primary: i === 0 });
      }
    }
    await this.#decodeFinished();
  }

  /** Moves waiting requests into the active set, FIFO, within the row cap; one text-encoder call for all of them. */
  async #admit(): Promise<void> {
    let rows = this.#active.reduce((a, t) => a + rowsOf(t.state!), 0);
    const joining: Ticket[] = [];
    while (this.#pending.length) {
      const next = this.#pending[0]!;
      if ((this.#active.length || joining.length) && rows + next.rows > this.#maxRows) break;
      joining.push(this.#pending.shift()!);
      rows += next.rows;
    }
    if (!joining.length) return;
    const t0 = performance.now();
    try {
      const states = await this.#pipeline.prepare(
        joining.map((t) => t.request),
        joining.map((t) => t.params),
      );
      const ms = performance.now() - t0;
      joining.forEach((t, i) => {
        t.state = states[i]!;
        t.admittedAt = t0;
        t.encodeTextMs = ms;
      });
      this.#active.push(...joining);
    } catch (err) {
      for (const t of joining) this.#fail(t, denoiseFailure({ request: t.request, params: t.params, stepIndex: 0, timesteps: [] }, err, "prepare"));
    }
  }

  /** The shape group to step now: largest rows × (1 + times skipped); ties go to the group of the oldest request. */
  #pickGroup(): Ticket[] {
    const groups = new Map<string, Ticket[]>();
    for (const t of this.#active) if (!isFinished(t.state!)) groups.set(shapeKey(t.state!), [...(groups.get(shapeKey(t.state!)) ?? []), t]);
    let best: { key: string; score: number } | null = null;
    for (const [key, ts] of groups) {
      const score = ts.reduce((a, t) => a + rowsOf(t.state!), 0) * (1 + (this.#skipped.get(key) ?? 0));
      if (!best || score > best.score) best = { key, score };
    }
    const skipped = new Map<string, number>();
    for (const key of groups.keys()) if (key !== best?.key) skipped.set(key, (this.#skipped.get(key) ?? 0) + 1);
    this.#skipped = skipped;
    return best ? groups.get(best.key)! : [];
  }

  async #report(t: Ticket, batch: StepProgress["batch"]): Promise<void> {
    const { onProgress, previewEvery } = t.opts;
    if (!onProgress) return;
    const s = t.state!;
    const every = previewEvery?.[s.request.requestId] ?? 0;
    const p: StepProgress = { requestId: s.request.requestId, step: s.stepIndex, totalSteps: s.timesteps.length, batch };
    if (every > 0 && s.stepIndex % every === 0 && s.stepIndex < s.timesteps.length) {
      try {
        p.preview = (await this.#pipeline.decode([s], true))[0];
      } catch (err) {
        // A preview is a courtesy: its failure must not fail the request.
        process.emitWarning(`preview of ${s.request.requestId} failed: ${toOmniError(err).message}`);
      }
    }
    try {
      onProgress(p);
    } catch (err) {
      process.emitWarning(`onProgress callback threw: ${toOmniError(err).message}`);
    }
  }

  /** Decodes every state that just finished, in one VAE call per shape, and answers each at once. */
  async #decodeFinished(): Promise<void> {
    const finished = this.#active.filter((t) => isFinished(t.state!));
    if (!finished.length) return;
    this.#active = this.#active.filter((t) => !finished.includes(t));
    const t0 = performance.now();
    let images: GeneratedImage[][];
    try {
      images = await this.#pipeline.decode(finished.map((t) => t.state!));
    } catch (err) {
      for (const t of finished) this.#fail(t, denoiseFailure(t.state!, err, "decode"));
      return;
    }
    const decodeMs = performance.now() - t0;
    finished.forEach((t, i) => {
      const s = t.state!;
      t.done(new DiffusionOutput({ output: images[i]!, ...trajectoriesOf([s]), metrics: { ...this.#metrics(t), decodeMs, totalMs: performance.now() - t.receivedAt } }));
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
    t.done(new DiffusionOutput({ errors: { [t.request.requestId]: error }, metrics: { ...this.#metrics(t), totalMs: performance.now() - t.receivedAt } }));
  }

  #metrics(t: Ticket): StageMetrics {
    if (!t.admittedAt) return { workerQueueMs: performance.now() - t.receivedAt };
    const m: StageMetrics = { workerQueueMs: t.admittedAt - t.receivedAt, encodeTextMs: t.encodeTextMs };
    if (t.firstStepAt) {
      m.firstStepMs = t.firstStepAt - t.receivedAt;
      m.denoiseMs = t.lastStepAt - (t.admittedAt + t.encodeTextMs);
    }
    return m;
  }
}
