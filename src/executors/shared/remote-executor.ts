import type { z } from "zod";
import type { OmniDiffusionConfig } from "../../core/config.js";
import { DiffusionOutput } from "../../core/output.js";
import type { OmniDiffusionRequest } from "../../core/request.js";
import { AbortedError, ClosedError, OmniError, TimeoutError, UnhealthyError, ValidationError, WorkerError, toOmniError } from "../../errors/omni-error.js";
import type { StepProgress } from "../../core/progress.js";
import { DiffusionExecutor, type CollectiveRpcOptions, type EndpointState, type ExecuteOptions } from "../base.js";
import { Deadline } from "../../policies/deadline.js";
import { Endpoint, EndpointPool, type EndpointMetrics } from "../../policies/endpoint-pool.js";
import { RemotePolicy, allUnreachableError, isUnreachable, type AttemptContext, type RemoteCallOptions } from "../../policies/remote-policy.js";
import { describeFailure, withEndpoint, type RetryEvent } from "../../policies/retry-events.js";
import { pollDelayMs, pollPolicy } from "../../policies/worker-policies.js";
import type { Clock } from "../../utils/clock.js";
import { parseRemoteOptions, type RemoteOptions, type remoteOptionsSchema } from "./remote-options.js";

/** First wait of `init` between health rounds while no endpoint is ready, ms (doubles up to `backoffMaxMs`). */
const READY_POLL_MS = 250;
/** Deadline of a best-effort abort sent to a server, ms. */
const ABORT_TIMEOUT_MS = 5_000;

/** A batch the executor will send as one call, and the requests it refuses before sending (by id). */
export interface BatchPlan {
  batches: OmniDiffusionRequest[][];
  rejected: Record<string, OmniError>;
}

/**
 * The shared part of every remote executor (`http`, `grpc`, `sagemaker`, `openai`): options, endpoints,
 * the {@link RemotePolicy} every call goes through, batching, per-request error reporting, abort
 * routing, health and shutdown. A transport subclass supplies only the wire: how to open a client for
 * an endpoint and how to send a batch, an RPC, a health probe (and, where the server can, an abort).
 */
export abstract class RemoteExecutor<C, O extends RemoteOptions = RemoteOptions> extends DiffusionExecutor {
  static override readonly isRemote: boolean = true;

  /** Validated `executorOptions`. */
  protected readonly options: O;
  #policy: RemotePolicy<C> | null = null;
  /** Where each in-flight request runs, and how to cancel its call locally. */
  #running = new Map<string, RunningBatch<C>>();
  #retryListeners: ((e: RetryEvent) => void)[] = [];

  /** Endpoint names, checked at construction. */
  readonly #names: string[];
  readonly #clock: Clock | undefined;

  /**
   * Throws ConfigError for bad `executorOptions` (endpoints included) before anything connects. `deps.clock`
   * times the circuit breakers' half-open waits (tests pass a manual clock; default: the real one).
   */
  constructor(config: OmniDiffusionConfig, schema: typeof remoteOptionsSchema | z.ZodObject, deps: { clock?: Clock } = {}) {
    super(config);
    this.options = parseRemoteOptions(schema as typeof remoteOptionsSchema, config.executorOptions, new.target.name) as O;
    this.#names = this.endpointNames();
    this.#clock = deps.clock;
  }

  /**
   * Endpoint names (URLs, host:port, endpoint names) this executor balances over, from `this.options` only:
   * it is called by the constructor, before subclass fields exist. Throws ConfigError for a bad one.
   */
  protected abstract endpointNames(): string[];
  /** Opens a client for one endpoint (lazily connecting is fine). */
  protected abstract connect(endpoint: string): C;
  /** Releases one endpoint's client. */
  protected abstract disconnect(client: C): Promise<void>;
  /** Sends one batch to `ctx.endpoint`; per-request failures belong in the output's `errors`. */
  protected abstract generateOn(ctx: AttemptContext<C>, batch: OmniDiffusionRequest[], onProgress?: (p: StepProgress) => void): Promise<DiffusionOutput>;
  /** Sends one collective RPC to `ctx.endpoint` and returns its result. */
  protected abstract rpcOn(ctx: AttemptContext<C>, method: string, opts: CollectiveRpcOptions): Promise<unknown>;
  /** One health round trip to `endpoint` within `deadline`; throws when it cannot serve. */
  protected abstract healthOn(endpoint: Endpoint<C>, deadline: Deadline): Promise<void>;

  /**
   * Asks the server behind `endpoint` to stop requests between steps. Transports whose server cannot
   * leave this undefined; the executor then cancels the call itself when it carries only that request.
   */
  protected abortOn?(endpoint: Endpoint<C>, requestIds: string[], deadline: Deadline): Promise<void>;

  /**
   * A service limit on one call's duration (SageMaker's 60 s), and what to tell the user when a call
   * reaches it. Default: none.
   */
  protected callLimit(): { ms: number; note: string } | null {
    return null;
  }

  /** Splits a batch into calls. Default: one call. */
  protected planBatches(requests: OmniDiffusionRequest[]): BatchPlan {
    return { batches: [requests], rejected: {} };
  }

  /** The pool and policy; throws before `init`. */
  protected get policy(): RemotePolicy<C> {
    this.assertOpen();
    if (!this.#policy) throw new WorkerError(`${this.constructor.name} is not initialised; await init() first`);
    return this.#policy;
  }

  /** Per-endpoint counters and circuit states. */
  endpointMetrics(): EndpointMetrics[] {
    return this.#policy?.pool.metrics() ?? [];
  }

  /** `numGpus` batches in flight per endpoint (set `numGpus` to a worker's rank count), so the engine keeps every endpoint busy. */
  override get maxConcurrentBatches(): number {
    return this.#names.length * Math.max(1, this.config.numGpus);
  }

  /** Each endpoint's circuit state; `restarts` counts how often its circuit opened. */
  override endpointStates(): EndpointState[] {
    return this.endpointMetrics().map((m) => ({ endpoint: m.endpoint, state: m.state, restarts: m.breakerOpens }));
  }

  /** Registers a listener told about each retry (operation, attempt, delay, endpoint, error). */
  onRetry(listener: (e: RetryEvent) => void): void {
    this.#retryListeners.push(listener);
    this.#policy?.onRetry(listener);
  }

  /**
   * Opens every endpoint, then waits (up to `workerStartTimeoutMs`) until at least one passes a health
   * check. It stops waiting at once when no retry can help: every endpoint failed for good (a wrong key:
   * UnauthorizedError; a forbidden one: PermissionError; a wrong URL: NotFoundError; missing cloud
   * credentials: ConfigError; thrown as the endpoint gave it), or every endpoint has refused connections
   * for `refusedTimeoutMs` (a TransportError naming each). Each wait is reported like a retry
   * (`onRetry`, {@link RETRY_CHANNEL}).
   */
  protected async initExecutor(): Promise<void> {
    const o = this.options;
    const breaker = { threshold: o.breakerThreshold, halfOpenAfterMs: o.halfOpenAfterMs, clock: this.#clock };
    const endpoints = this.#names.map((name) => new Endpoint(name, this.connect(name), breaker));
    const retry = { retries: o.retries, backoffInitialMs: o.backoffInitialMs, backoffMaxMs: o.backoffMaxMs, refusedTimeoutMs: o.refusedTimeoutMs };
    this.#policy = new RemotePolicy(new EndpointPool(endpoints), retry);
    for (const l of this.#retryListeners) this.#policy.onRetry(l);
    const ms = this.config.workerStartTimeoutMs;
    const until = Date.now() + ms;
    const refusedSince = new Map<string, number>();
    const maxWait = Math.max(o.backoffMaxMs, READY_POLL_MS);
    const policy = this.#policy;
    /** The failures of the last round, while another round may help; null once the round decided to stop. */
    let waiting: { endpoint: string; error: OmniError }[] | null = null;
    const poll = pollPolicy(READY_POLL_MS, () => waiting !== null, maxWait);
    poll.onRetry(({ attempt, delay }) => {
      const first = waiting![0]!;
      policy.report({ operation: "init", attempt, maxAttempts: undefined, delayMs: delay, endpoint: first.endpoint, error: first.error, reason: describeFailure(first.error) });
    });
    await poll.execute(async ({ attempt }) => {
      waiting = null;
      const problems = await this.#probe(Math.max(1, Math.min(o.healthTimeoutMs, until - Date.now())));
      if (!problems) return;
      if (this.isClosed) throw new ClosedError(`${this.constructor.name} was closed while starting`, { cause: problems[0]!.error });
      const now = Date.now();
      for (const p of problems) if (!isUnreachable(p.error)) refusedSince.delete(p.endpoint);
      for (const p of problems) if (isUnreachable(p.error) && !refusedSince.has(p.endpoint)) refusedSince.set(p.endpoint, now);
      const permanent = problems.filter((p) => !p.error.retryable && !isUnreachable(p.error));
      const hopeless = (p: { endpoint: string; error: OmniError }) =>
        !p.error.retryable || (isUnreachable(p.error) && now - refusedSince.get(p.endpoint)! >= o.refusedTimeoutMs);
      if (problems.every(hopeless)) {
        // A retry cannot help: say why now instead of after workerStartTimeoutMs.
        if (permanent.length) throw permanent[0]!.error;
        const failures = new Map(problems.map((p) => [p.endpoint, p.error]));
        throw allUnreachableError(failures, problems[problems.length - 1]!.error);
      }
      if (Date.now() + pollDelayMs(READY_POLL_MS, maxWait, attempt + 1) >= until) {
        const why = problems.map((p) => withEndpoint(p.endpoint, p.error)).join("; ");
        throw new TimeoutError(`no endpoint of ${this.constructor.name} became ready within ${ms}ms (workerStartTimeoutMs): ${why}`, {
          cause: problems[0]!.error,
          data: { method: "init", timeoutMs: ms },
        });
      }
      waiting = problems;
      throw problems[0]!.error;
    });
  }

  /** The call's budget: the caller's timeout (else `rpcTimeoutMs`), `executorOptions.timeoutMs`, and the service limit. */
  #budget(ms: number | undefined, signal: AbortSignal | undefined): RemoteCallOptions {
    const timeoutMs = Math.min(ms ?? this.config.rpcTimeoutMs, this.options.timeoutMs ?? Number.POSITIVE_INFINITY);
    const limit = this.callLimit();
    if (limit && limit.ms < timeoutMs) return { timeoutMs: limit.ms, timeoutNote: limit.note, signal };
    return { timeoutMs, signal };
  }

  override async collectiveRpc(method: string, opts: CollectiveRpcOptions = {}): Promise<unknown> {
    const policy = this.policy;
    if (typeof method !== "string" || !method) throw new ValidationError("collectiveRpc needs a method name", { field: "method" });
    return policy.execute(`collectiveRpc("${method}")`, (ctx) => this.rpcOn(ctx, method, opts), this.#budget(opts.timeout, opts.signal));
  }

  /**
   * Sends the batch (split by {@link planBatches}) through the resilience layer. A call that fails for
   * good gives each of its requests that error in `errors`; only the caller's own abort throws.
   */
  override async executeModel(requests: OmniDiffusionRequest[], opts: ExecuteOptions = {}): Promise<DiffusionOutput> {
    const policy = this.policy;
    if (!requests.length) return new DiffusionOutput();
    const { batches, rejected } = this.planBatches(requests);
    const parts = await Promise.all(batches.map((batch) => this.#runBatch(policy, batch, opts)));
    return DiffusionOutput.merge([...parts, new DiffusionOutput({ errors: rejected })]);
  }

  async #runBatch(policy: RemotePolicy<C>, batch: OmniDiffusionRequest[], opts: ExecuteOptions): Promise<DiffusionOutput> {
    const cancel = new AbortController();
    const budget = this.#budget(opts.timeout, opts.signal ? AbortSignal.any([opts.signal, cancel.signal]) : cancel.signal);
    const entry: RunningBatch<C> = { endpoint: null, cancel, batchSize: batch.length, told: new Set() };
    for (const r of batch) this.#running.set(r.requestId, entry);
    try {
      const out = await policy.execute(
        "generate",
        (ctx) => {
          entry.endpoint = ctx.endpoint;
          return this.generateOn(ctx, batch, opts.onProgress);
        },
        budget,
      );
      return onlyFor(batch, out);
    } catch (err) {
      if (opts.signal?.aborted) {
        // The caller's signal ended the call here; the server is told too, as an abort by id would (once).
        for (const r of batch) if (!entry.told.has(r.requestId)) void this.abortRequest(r.requestId).catch(() => undefined);
        throw err;
      }
      // An abortRequest or a shutdown ended it: the policy already threw that reason (AbortedError, ClosedError).
      const e = toOmniError(err);
      return new DiffusionOutput({ errors: Object.fromEntries(batch.map((r) => [r.requestId, e])) });
    } finally {
      for (const r of batch) if (this.#running.get(r.requestId) === entry) this.#running.delete(r.requestId);
    }
  }

  /** Stops a running request: on its server where the transport can, else by cancelling a call that carries only it. */
  override async abortRequest(requestId: string): Promise<void> {
    this.assertOpen();
    const entry = this.#running.get(requestId);
    if (!entry || entry.told.has(requestId)) return;
    entry.told.add(requestId);
    if (this.abortOn && entry.endpoint) {
      const dl = new Deadline(ABORT_TIMEOUT_MS, undefined, () => new TimeoutError(`abort of ${requestId} timed out`, { data: { method: "abort" } }));
      try {
        await dl.race(this.abortOn(entry.endpoint, [requestId], dl));
      } catch (err) {
        // Best effort: the request still ends by its own deadline if the server cannot be told.
        process.emitWarning(`${this.constructor.name}: abort of ${requestId} on ${entry.endpoint.url} failed: ${toOmniError(err).message}`);
      } finally {
        dl.dispose();
      }
    } else if (entry.batchSize === 1) {
      entry.cancel.abort(new AbortedError(`request ${requestId} was aborted`));
    }
  }

  /** One round trip per endpoint (through its breaker); healthy while at least one endpoint serves. */
  override async checkHealth(opts: { timeout?: number; signal?: AbortSignal } = {}): Promise<void> {
    const problems = await this.#probe(opts.timeout ?? this.options.healthTimeoutMs, opts.signal);
    if (problems) {
      throw new UnhealthyError(`${this.constructor.name} is unhealthy: ${problems.map((p) => withEndpoint(p.endpoint, p.error)).join("; ")}`, {
        data: { endpoints: problems.map((p) => p.endpoint), problems: problems.map((p) => ({ endpoint: p.endpoint, reason: p.error.message, code: p.error.code })) },
      });
    }
  }

  /** Probes every endpoint at once; null when at least one serves, else each endpoint's failure. */
  async #probe(ms: number, signal?: AbortSignal): Promise<{ endpoint: string; error: OmniError }[] | null> {
    const pool = this.policy.pool;
    const dl = new Deadline(ms, signal, () => new TimeoutError(`health check timed out after ${ms}ms`, { data: { method: "health", timeoutMs: ms } }));
    try {
      const results = await Promise.all(
        pool.endpoints.map((ep) =>
          ep.run(() => dl.race(this.healthOn(ep, dl)), false).then(
            () => null,
            (err: unknown) => {
              const e = toOmniError(err);
              // An open circuit skipped the probe: the endpoint's own last failure is still what is wrong.
              return { endpoint: ep.url, error: e.data.circuitOpen === true && ep.lastFailure ? ep.lastFailure : e };
            },
          ),
        ),
      );
      if (dl.callerAborted) throw dl.signal.reason;
      const problems = results.filter((r): r is { endpoint: string; error: OmniError } => r !== null);
      return problems.length === pool.endpoints.length ? problems : null;
    } finally {
      dl.dispose();
    }
  }

  protected async shutdown(): Promise<void> {
    for (const entry of this.#running.values()) entry.cancel.abort(new ClosedError(`${this.constructor.name} is shut down`));
    const pool = this.#policy?.pool;
    if (pool) await Promise.all(pool.endpoints.map((ep) => this.disconnect(ep.client)));
  }
}

/** A batch on its way: where it runs, how to cancel its call here, and which of its requests were aborted. */
interface RunningBatch<C> {
  endpoint: Endpoint<C> | null;
  cancel: AbortController;
  batchSize: number;
  /** Requests an abort was already sent for (an abort by id and the caller's signal stop a request once). */
  told: Set<string>;
}

/** Keeps only images, errors and trajectories of the batch's own requests (a confused server cannot swap results). */
function onlyFor(batch: OmniDiffusionRequest[], out: DiffusionOutput): DiffusionOutput {
  const ids = new Set(batch.map((r) => r.requestId));
  const seen = new Set<string>();
  return new DiffusionOutput({
    output: out.output.filter((img) => {
      const key = `${img.requestId}#${img.index}`;
      if (!ids.has(img.requestId) || seen.has(key)) return false;
      seen.add(key);
      return true;
    }),
    error: out.error,
    errors: Object.fromEntries(Object.entries(out.errors).filter(([id]) => ids.has(id))),
    trajectoryLatents: out.trajectoryLatents?.filter((t) => ids.has(t.requestId)) ?? null,
    trajectoryTimesteps: out.trajectoryTimesteps?.filter((t) => ids.has(t.requestId)) ?? null,
    metrics: out.metrics,
  });
}
