import { DiffusionOutput, type GeneratedImage, type StageMetrics } from "../core/output.js";
import type { OmniDiffusionRequest } from "../core/request.js";
import type { BatchingPolicy } from "../core/config.js";
import { rowsOfRequest } from "../core/limits.js";
import type { StepProgress } from "../core/progress.js";
import { AbortedError, OmniError, toOmniError } from "../errors/omni-error.js";
import { abortedAt, denoiseFailure, isFinished, trajectoriesOf, type DenoiseState, type ResolvedParams } from "./denoise-state.js";
import type { CallBudgetStats, CallPlanner, MaxCallMs } from "./call-planner.js";
import { CostPlanner } from "./cost-planner.js";
import { RowsPlanner } from "./rows-planner.js";
import type { SteppablePipeline, UnetCall } from "./types.js";
import { UnetProfile } from "./unet-profile.js";

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

/** Options of a {@link StepLoop}. */
export interface StepLoopOptions {
  /** Most UNet rows per call: a hard cap under every budget (a single request bigger than it still runs, alone). */
  maxBatchRows: number;
  /** Who joins the active set when (default `continuous`). */
  admission?: BatchingPolicy;
  /** Runs each iteration when no other exclusive pipeline work runs (the worker's sleep/wakeUp/close). */
  exclusive?: Exclusive;
  /** The compute budget of one UNet call (default `"auto"`); see {@link MaxCallMs} and docs/batching.md. */
  maxCallMs?: MaxCallMs;
  /** The cost profile that prices calls (default: a fresh one, learned from this loop's calls); tests give a fixed one. */
  unetProfile?: UnetProfile;
}

/**
 * The one denoise driver: an active set of request states, advanced one denoising step per iteration in
 * one UNet call over the states of one image size (a shape group). The batching policy is only its
 * admission rule:
 *
 * - `continuous`: requests join at the next iteration while their size group's call stays within
 *   `maxBatchRows` rows and the compute budget (`maxCallMs`, priced by the {@link UnetProfile}); a request
 *   bigger than that runs alone. Within a size, the head of the queue is never bypassed, so a large request
 *   cannot be starved by a stream of small ones; other sizes, with budgets of their own, may pass it.
 * - `request`: the requests of one {@link run} call join together, once the active set is empty; the next
 *   call waits until every one of them finished (request-level batching: `step` splits at `maxBatchRows`).
 * - `none`: one request at a time.
 *
 * With several sizes active, each iteration steps the group that has received the least UNet time per row,
 * so every row gets an equal share of the UNet's time, priced by the profile (see {@link CostPlanner});
 * `maxCallMs: "off"` keeps the rule of rows alone ({@link RowsPlanner}). Finished states are decoded and
 * answered at once; aborted ones (and ones past their call's deadline) leave between steps. Every state
 * keeps its own scheduler, step count and noise stream, so a request's images do not depend on who else was
 * in the crowd. Each iteration runs under `exclusive`, so sleep/wakeUp/close slot in between steps.
 */
export class StepLoop {
  readonly #pipeline: SteppablePipeline;
  readonly #exclusive: Exclusive;
  readonly #admission: BatchingPolicy;
  readonly #planner: CallPlanner;
  #pending: Ticket[] = [];
  #active: Ticket[] = [];
  #running = false;
  #calls = 0;
  #idleWaiters: (() => void)[] = [];
  readonly #stats: StepLoopStats = { iterations: 0, unetCalls: 0, unetRows: 0, unetMs: 0, stepMs: 0, encodeTextMs: 0, decodeMs: 0, previewMs: 0, progressMs: 0, busyMs: 0 };

  constructor(pipeline: SteppablePipeline, opts: StepLoopOptions) {
    this.#pipeline = pipeline;
    this.#admission = opts.admission ?? "continuous";
    this.#exclusive = opts.exclusive ?? ((fn) => fn());
    const maxCallMs = opts.maxCallMs ?? "auto";
    const profile = opts.unetProfile ?? new UnetProfile();
    this.#planner =
      maxCallMs === "off" ? new RowsPlanner({ maxBatchRows: opts.maxBatchRows, profile }) : new CostPlanner({ maxBatchRows: opts.maxBatchRows, maxCallMs, profile });
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

  /** The compute budget in effect and the UNet profile behind it, per image size. */
  get callBudget(): CallBudgetStats {
    return this.#planner.stats();
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
    const group = this.#planner.pick(this.#active, this.#pending);
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
    this.#planner.stepped(calls);
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
    const joining = this.#planner.admit(this.#pending, this.#active);
    const set = new Set(joining);
    this.#pending = this.#pending.filter((t) => !set.has(t));
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

  async #report(t: Ticket, batch: StepProgress["batch"]): Promise<void> {
    const { onProgress, previewEvery } = t.opts;
    if (!onProgress) return;
    const s = t.state!;
    const every = previewEvery && Object.hasOwn(previewEvery, s.request.requestId) ? (previewEvery[s.request.requestId] ?? 0) : 0;
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
    if (t.state) this.#pipeline.discard?.(t.state);
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
