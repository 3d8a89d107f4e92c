import { DiffusionOutput } from "../core/output.js";
import { OmniDiffusionRequest, type OmniDiffusionRequestTransfer } from "../core/request.js";
import type { BatchingPolicy } from "../core/config.js";
import { TimeoutError, ValidationError, toOmniError, type OmniError } from "../errors/omni-error.js";
import type { CallBudgetStats, MaxCallMs } from "../pipelines/call-planner.js";
import { StepLoop, type ResolvedRequest, type StepLoopRunOptions, type StepLoopStats } from "../pipelines/step-loop.js";
import type { UnetProfile } from "../pipelines/unet-profile.js";
import { isSteppable, type DiffusionPipeline, type SteppablePipeline, type StepProgress } from "../pipelines/types.js";
import { Deadline } from "../policies/deadline.js";
import type { ExclusiveLane } from "./exclusive-lane.js";
import { OneStepPipeline } from "./one-step-pipeline.js";

/** Per-call context of one generate: what the transport supplies with the RPC. */
export interface GenerateContext {
  /** Absolute `Date.now()` time after which the call stops between steps (its requests get a TimeoutError). */
  deadline?: number;
  onProgress?: (p: StepProgress) => void;
  /** Aborts the call between steps. */
  signal?: AbortSignal;
  /** Request id → decode a preview every N steps for that request. */
  previewEvery?: Readonly<Record<string, number>>;
}

/** How to build a {@link GenerateIntake}. */
export interface GenerateIntakeOptions {
  rank: number;
  /** The step loop's admission rule (`request` when absent; always `request` for a pipeline without the step-level interface). */
  batching?: BatchingPolicy;
  maxBatchRows?: number;
  maxCallMs?: MaxCallMs;
  unetProfile?: UnetProfile;
  /** The worker's lane: every step-loop iteration runs on it, between sleep/wakeUp/close. */
  lane: ExclusiveLane;
}

/**
 * A worker's generate path: typed requests in (an in-process caller's {@link OmniDiffusionRequest}s, or our
 * own parent's transfer forms, validated once when built and not parsed again), the step loop, one output
 * out. It owns what "one request id runs once at a time" needs: the in-flight ids and the aborts by id.
 * Every pipeline runs through the one {@link StepLoop}; one without the step-level interface through a
 * {@link OneStepPipeline}, one whole `generate` per loop step. The call's deadline is a {@link Deadline}.
 */
export class GenerateIntake {
  readonly loop: StepLoop;
  /** False for a pipeline driven through the one-step adapter (its loop counts no UNet work). */
  readonly stepLevel: boolean;
  readonly #rank: number;
  readonly #steppable: SteppablePipeline;
  #inFlight = new Set<string>();
  #aborted = new Set<string>();
  /** Each running request's loop options, for the one-step adapter (the loop does not hand them to `step`). */
  #runOptions = new Map<string, StepLoopRunOptions>();
  #requestsDone = 0;

  constructor(pipeline: DiffusionPipeline, opts: GenerateIntakeOptions) {
    this.#rank = opts.rank;
    this.stepLevel = isSteppable(pipeline);
    if (isSteppable(pipeline)) {
      if (opts.maxBatchRows !== undefined) pipeline.maxBatchRows = opts.maxBatchRows;
      this.#steppable = pipeline;
    } else {
      this.#steppable = new OneStepPipeline(pipeline, (id) => this.#runOptions.get(id), `generate on worker rank ${opts.rank}`, { rank: opts.rank });
    }
    this.loop = new StepLoop(this.#steppable, {
      maxBatchRows: this.#steppable.maxBatchRows,
      // A pipeline without steps runs one generate call at a time, as it always did.
      admission: this.stepLevel ? (opts.batching ?? "request") : "request",
      exclusive: (fn) => opts.lane.run(fn),
      maxCallMs: this.stepLevel ? opts.maxCallMs : "off",
      unetProfile: opts.unetProfile,
    });
  }

  get inFlight(): number {
    return this.#inFlight.size;
  }

  get requestsDone(): number {
    return this.#requestsDone;
  }

  /** The loop's time counters, and its compute budget; null for a pipeline without steps. */
  get stats(): { loop: StepLoopStats | null; callBudget: CallBudgetStats | null } {
    return this.stepLevel ? { loop: this.loop.stats, callBudget: this.loop.callBudget } : { loop: null, callBudget: null };
  }

  /** Our own parent's form (`transfer: true` over IPC): validated requests with raw images, not parsed again. */
  runTransfers(transfers: unknown, ctx: GenerateContext = {}): Promise<DiffusionOutput> {
    if (!Array.isArray(transfers)) throw new ValidationError(`generate expects an array of requests, got ${typeof transfers}`, { field: "requests" });
    return this.run(
      transfers.map((t) => OmniDiffusionRequest.fromTransfer(t as OmniDiffusionRequestTransfer)),
      ctx,
    );
  }

  /**
   * Resolves each request once (the model's defaults and checks) and runs the valid ones in the step loop.
   * A request that fails its check, repeats an id of the batch or of `errors`, or whose id is already
   * running here, gets its error in `errors`; the others still run. `errors` holds the caller's own
   * failures of this batch (requests it could not build), keyed by id.
   */
  async run(requests: readonly OmniDiffusionRequest[], ctx: GenerateContext = {}, errors: Record<string, OmniError> = {}): Promise<DiffusionOutput> {
    const valid = new Map<string, ResolvedRequest>();
    for (const request of requests) {
      const id = request.requestId;
      try {
        if (valid.has(id) || Object.hasOwn(errors, id)) {
          valid.delete(id);
          throw new ValidationError(`request_id "${id}" appears more than once in one batch`, { field: "request_id" });
        }
        // Calls overlap in the step loop, and aborts and bookkeeping go by id: an id may run once at a time.
        if (this.#inFlight.has(id)) throw new ValidationError(`request_id "${id}" is already running on worker rank ${this.#rank}`, { field: "request_id" });
        // Resolved once here and carried into the loop (prepare takes the same params).
        valid.set(id, { request, params: this.#steppable.resolve(request) });
      } catch (err) {
        errors[id] = toOmniError(err);
      }
    }
    const batch = [...valid.values()];
    if (!batch.length) return new DiffusionOutput({ errors });
    // Registered before queueing, so an abort that arrives while the batch waits its turn is honoured.
    for (const { request } of batch) this.#inFlight.add(request.requestId);
    const dl =
      ctx.deadline === undefined
        ? null
        : new Deadline(ctx.deadline - Date.now(), ctx.signal, () => new TimeoutError(`generate on worker rank ${this.#rank} passed its deadline`, { data: { rank: this.#rank, method: "generate" } }));
    const opts: StepLoopRunOptions = {
      signal: dl ? dl.signal : ctx.signal,
      isAborted: (id) => this.#aborted.has(id),
      onProgress: ctx.onProgress,
      previewEvery: ctx.previewEvery,
    };
    for (const { request } of batch) this.#runOptions.set(request.requestId, opts);
    try {
      const out = await this.loop.run(batch, opts);
      return DiffusionOutput.merge([out, new DiffusionOutput({ errors })]);
    } finally {
      dl?.dispose();
      for (const { request } of batch) {
        this.#inFlight.delete(request.requestId);
        this.#aborted.delete(request.requestId);
        this.#runOptions.delete(request.requestId);
      }
      this.#requestsDone += batch.length;
    }
  }

  /** Marks an in-flight request aborted; it stops at its next step. False when it is not running here. */
  abort(requestId: string): boolean {
    if (!this.#inFlight.has(requestId)) return false;
    this.#aborted.add(requestId);
    return true;
  }
}
