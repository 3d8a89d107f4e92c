import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import type { Registry } from "prom-client";
import { z } from "zod";
import type { OmniDiffusionConfig } from "../core/config.js";
import { DiffusionOutput } from "../core/output.js";
import type { OmniDiffusionRequest } from "../core/request.js";
import { AbortedError, ClosedError, QueueFullError, TimeoutError, TransportError, UnhealthyError, ValidationError, WorkerError, toOmniError, NotFoundError } from "../errors/omni-error.js";
import { DiffusionExecutor, type CollectiveRpcOptions, type EndpointState, type ExecuteOptions } from "./base.js";
import { EventReader } from "./queue/event-reader.js";
import { ModelQueues } from "./queue/model-queues.js";
import { JobWaiters, errorOutput } from "./queue/job-waiters.js";
import {
  ABORT_TTL_MS,
  DEFAULT_QUEUE_NAME,
  KEEP_FINISHED_S,
  RedisConnectionWatch,
  quietRedisErrors,
  describeRedis,
  jobIdFor,
  loadQueueSdk,
  queueKeys,
  readQueueStats,
  redisNow,
  redisOptions,
  registerQueueMetrics,
  whenReady,
  type JobData,
  type QueueStats,
  type WorkerInfo,
} from "../protocol/queue-protocol.js";
import { DEFAULT_RPC_RESEND_MS, RpcBroadcast } from "./queue/rpc-broadcast.js";
import { parseRemoteOptions } from "./shared/remote-options.js";
import { requestToDict } from "../protocol/request-codec.js";
import { Deadline } from "../policies/deadline.js";
import { DEFAULT_REFUSED_TIMEOUT_MS } from "../policies/remote-policy.js";
import { pollPolicy } from "../policies/worker-policies.js";
import { orTimeout, settleWithin } from "../utils/settle-within.js";

const queueOptionsSchema = z.object({
  /** `redis://[:password@]host:port[/db]` (or `rediss://`). */
  url: z.string().min(1),
  /** BullMQ queue name; the server and its workers must agree. */
  queue: z.string().regex(/^[A-Za-z0-9_.-]{1,100}$/, "letters, digits, _ . - (no colon)").default(DEFAULT_QUEUE_NAME),
  /** Most jobs waiting for a worker; more are refused with QueueFullError (429 at the server). */
  maxWaiting: z.number().int().min(1).default(1_000),
  /** Most requests this executor has in the queue at once (the engine dispatches up to this many). */
  maxInFlight: z.number().int().min(1).max(100_000).default(256),
  /** Attempts per job when a worker throws (a stalled job is redelivered without using one). */
  attempts: z.number().int().min(1).max(20).default(3),
  /** Deadline of one health round trip, ms. */
  healthTimeoutMs: z.number().int().min(1).default(5_000),
  /** Total budget of one request, ms; the engine's `rpcTimeoutMs` applies when absent, the smaller when both are set. */
  timeoutMs: z.number().int().min(1).optional(),
  /** How long `init` keeps trying while Redis refuses connections (nothing listens), ms; then it fails naming the refusal. */
  refusedTimeoutMs: z.number().int().min(0).default(DEFAULT_REFUSED_TIMEOUT_MS),
  /** How long `collectiveRpc` waits for a missing reply before sending the call again (pub/sub can drop it), ms. */
  rpcResendMs: z.number().int().min(1).default(DEFAULT_RPC_RESEND_MS),
});

type QueueOptions = z.output<typeof queueOptionsSchema>;

/** How often `init` re-checks for a live worker, ms. */
const READY_POLL_MS = 200;
/** How long shutdown waits for BullMQ's graceful close before cutting the connections, ms. */
const CLOSE_TIMEOUT_MS = 2_000;

/**
 * Sends work through a durable Redis queue (BullMQ) to any number of `omni-diffusion worker --queue`
 * processes that pull it (see `docs/fleet.md`). One job per request, with the request id as the job id, so
 * enqueueing a request again (a retry) attaches to the job that exists instead of running it twice. A
 * worker that dies mid-job stops renewing its lock, and BullMQ hands the job to another worker; the caller
 * sees each request's result once. Step progress (and previews) come back through the queue's events;
 * an abort reaches the worker holding the job through pub/sub and stops it at the next step.
 *
 * `collectiveRpc` broadcasts to every worker with a live heartbeat and numbers their ranks across the fleet
 * (worker-id order; each reply carries `worker` and `workerRank`). `checkHealth` needs Redis to answer and
 * at least one live worker. A lost connection to Redis fails the requests waiting on it with a retryable
 * TransportError at once; calls made while Redis is down fail at once too, and the executor recovers by
 * itself when Redis is back.
 *
 * `executorOptions`: `url` (required), `queue` ("omni-diffusion"), `maxWaiting` (1000), `maxInFlight` (256),
 * `attempts` (3), `healthTimeoutMs` (5000), `timeoutMs`, `refusedTimeoutMs` (5000). Redis refusing the
 * credentials fails `init` at once with an UnauthorizedError; refusing connections for `refusedTimeoutMs`,
 * with a TransportError naming host and port.
 *
 * @example
 * ```ts
 * import { DiffusionEngine } from "../engine/engine.js";
 * const engine = await DiffusionEngine.create({
 *   executorClass: "queue",
 *   executorOptions: { url: "redis://127.0.0.1:6379/0", queue: "omni-diffusion", maxWaiting: 500 },
 * });
 * ```
 */
export class QueueDiffusionExecutor extends DiffusionExecutor {
  static override readonly isRemote: boolean = true;
  static override readonly supportsAbortMidStep: boolean = true;
  /** Each request is its own job; the workers batch jobs that overlap into shared denoising steps. */
  static override readonly supportsContinuousBatching: boolean = true;

  readonly options: QueueOptions;
  readonly #redis: ReturnType<typeof redisOptions>;
  readonly #where: string;
  readonly #keys: ReturnType<typeof queueKeys>;
  #queue: Queue | null = null;
  #events: EventReader | null = null;
  /** A queue per model named by requests (issue 24), made on first use. */
  #modelQueues: ModelQueues | null = null;
  /** The queue each in-flight request's job was put on (a model's own, or the base queue), for abortRequest. */
  readonly #jobQueues = new Map<string, Queue>();
  #client: Redis | null = null;
  #sub: Redis | null = null;
  #eventsConn: Redis | null = null;
  #waiters: JobWaiters | null = null;
  #rpc: RpcBroadcast | null = null;
  #watch: RedisConnectionWatch | null = null;
  #lostConnections = 0;

  /** Throws ConfigError for bad `executorOptions` before anything connects. */
  constructor(config: OmniDiffusionConfig) {
    super(config);
    this.options = parseRemoteOptions(queueOptionsSchema, config.executorOptions, "QueueDiffusionExecutor");
    this.#redis = redisOptions(this.options.url);
    this.#where = `${describeRedis(this.#redis)} queue "${this.options.queue}"`;
    this.#keys = queueKeys(this.options.queue);
  }

  /** Connects to Redis, then waits (up to `workerStartTimeoutMs`) for a live worker. */
  protected async initExecutor(): Promise<void> {
    const sdk = await loadQueueSdk();
    const { Queue, Redis } = sdk;
    const failFast = { ...this.#redis, enableOfflineQueue: false };
    // The connections are ours, handed to BullMQ: shutdown can always cut them, even while Redis is unreachable.
    this.#client = new Redis(failFast);
    // Credentials Redis refuses, or an address that keeps refusing connections: init stops at once, naming it.
    const watch = (this.#watch = new RedisConnectionWatch(this.#client, this.#redis, this.options.refusedTimeoutMs));
    this.#sub = new Redis(this.#redis);
    this.#eventsConn = new Redis(this.#redis);

    // Connection errors are reported through the calls and health checks that meet them, not as events.
    const quiet = () => undefined;
    for (const c of [this.#client, this.#sub, this.#eventsConn]) quietRedisErrors(c);
    const waiters = (this.#waiters = new JobWaiters());
    // BullMQ's queue, the event reader and the RPC channel start once Redis has answered (below): a
    // refusal then leaves no BullMQ connection behind to fail after shutdown.
    const startQueue = () => {
      if (this.#queue || this.isClosed) return;
      this.#queue = new Queue(this.options.queue, { connection: this.#client!, streams: { events: { maxLen: 2_000 } } });
      this.#queue.on("error", quiet);
      this.#events = new EventReader(this.#eventsConn!, this.#queue.keys.events!, (e) => waiters.handle(e));
      this.#modelQueues = new ModelQueues(this.options.queue, sdk, this.#client!, this.#redis, (e) => waiters.handle(e));
      this.#rpc = new RpcBroadcast(this.#client!, this.#sub!, this.options.queue, { resendMs: this.options.rpcResendMs });
    };
    // A lost connection may have lost events (and, without persistence, the jobs): fail what waits on it now.
    const onClose = () => {
      if (this.isClosed || !this.#waiters?.size) return;
      this.#lostConnections++;
      this.#waiters.failAll(new TransportError(`lost the connection to Redis at ${this.#where}; the requests may not have run (a retry with the same request id is safe)`, { data: { url: describeRedis(this.#redis) } }));
    };
    this.#client.on("close", onClose);
    this.#eventsConn.on("close", onClose);
    const until = Date.now() + this.config.workerStartTimeoutMs;
    // Each round is bounded: an unreachable Redis must end in the TimeoutError below, not a hang; a failure
    // no waiting can cure (refused credentials, refused connections for refusedTimeoutMs) ends it at once.
    let hopeless: unknown = null;
    void watch.failed.catch((err: unknown) => (hopeless = err));
    const poll = pollPolicy(READY_POLL_MS, () => !this.isClosed && hopeless === null && Date.now() + READY_POLL_MS < until);
    try {
      await poll.execute(async () => {
        const left = Math.max(1, until - Date.now());
        await orTimeout(
          Promise.race([
            (async () => {
              if (this.#client!.status === "wait" || this.#client!.status === "end") await this.#client!.connect();
              await whenReady(this.#client!);
              startQueue();
              await this.#events?.ready;
            })(),
            watch.failed,
          ]),
          left,
          () => new TimeoutError(`Redis did not answer within ${left}ms${watch.last ? ` (last error: ${watch.last.message})` : ""}`),
        );
        await this.checkHealth({ timeout: Math.max(1, Math.min(this.options.healthTimeoutMs, until - Date.now())) });
      });
    } catch (err) {
      if (this.isClosed) throw new ClosedError("QueueDiffusionExecutor was closed while starting", { cause: err });
      if (hopeless !== null) throw hopeless;
      throw new TimeoutError(`no worker became live on ${this.#where} within ${this.config.workerStartTimeoutMs}ms (workerStartTimeoutMs): ${toOmniError(err).message}`, {
        cause: err,
        data: { method: "init", timeoutMs: this.config.workerStartTimeoutMs },
      });
    }
  }

  #ready(): { queue: Queue; client: Redis; waiters: JobWaiters; rpc: RpcBroadcast } {
    this.assertOpen();
    if (!this.#queue || !this.#client || !this.#waiters || !this.#rpc) throw new WorkerError("QueueDiffusionExecutor is not initialised; await init() first");
    return { queue: this.#queue, client: this.#client, waiters: this.#waiters, rpc: this.#rpc };
  }

  /** Redis failures as a retryable TransportError that says where. */
  #redisError(err: unknown, what: string): TransportError {
    return new TransportError(`${what}: Redis at ${this.#where} is unreachable: ${this.#why(err)}`, { cause: err, data: { url: describeRedis(this.#redis) } });
  }

  /** The connection's own last error ("connection refused at host:port") over ioredis's "Stream isn't writeable". */
  #why(err: unknown): string {
    return this.#watch?.last?.message ?? toOmniError(err).message;
  }

  override get maxConcurrentBatches(): number {
    return this.options.maxInFlight;
  }

  /** Where this queue lives: `serve` keeps its predictions there too, so its replicas share one history. */
  redisTarget(): { url: string; queue: string } {
    return { url: this.options.url, queue: this.options.queue };
  }

  /** Live workers, by id. */
  async liveWorkers(): Promise<WorkerInfo[]> {
    const { client } = this.#ready();
    const now = await redisNow(client);
    const ids = await client.zrangebyscore(this.#keys.workers, now, "+inf");
    if (!ids.length) return [];
    const infos = await client.hmget(this.#keys.workerInfo, ...ids);
    return ids.map((id, i) => ({ ...(JSON.parse(infos[i] ?? "{}") as WorkerInfo), id })).sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  /** Counts, oldest waiting job and live workers of the queue (what the autoscaler reads). */
  stats(): Promise<QueueStats> {
    return readQueueStats(this.#ready().queue);
  }

  /** Adds the queue's gauges to a server's `/metrics` (serve calls this when the executor has it). */
  registerMetrics(registry: Registry): void {
    registerQueueMetrics(registry, this.#ready().queue);
  }

  /** One state per live worker (`live`); `restarts` counts connections to Redis lost with requests waiting. */
  override endpointStates(): EndpointState[] {
    return [{ endpoint: describeRedis(this.#redis), state: this.#client?.status === "ready" ? "ready" : "disconnected", restarts: this.#lostConnections }];
  }

  override async collectiveRpc(method: string, opts: CollectiveRpcOptions = {}): Promise<unknown> {
    const { rpc } = this.#ready();
    if (typeof method !== "string" || !method) throw new ValidationError("collectiveRpc needs a method name", { field: "method" });
    if (method === "generate") throw new ValidationError('"generate" is not callable as an RPC on the queue executor; use executeModel', { field: "method" });
    const timeoutMs = opts.timeout ?? this.config.rpcTimeoutMs;
    let workers: string[];
    try {
      workers = (await this.liveWorkers()).map((w) => w.id);
    } catch (err) {
      throw this.#redisError(err, `collectiveRpc("${method}")`);
    }
    return rpc.call(method, workers, { args: opts.args ?? [], kwargs: opts.kwargs ?? {}, timeoutMs, uniqueReplyRank: opts.uniqueReplyRank, signal: opts.signal });
  }

  /**
   * Enqueues one job per request and waits for each result. A request the queue refuses (full, Redis down,
   * an id BullMQ cannot use) gets its own error; only the caller's own abort throws.
   */
  override async executeModel(requests: OmniDiffusionRequest[], opts: ExecuteOptions = {}): Promise<DiffusionOutput> {
    const { queue, waiters } = this.#ready();
    if (!requests.length) return new DiffusionOutput();
    let waiting: number;
    try {
      // Every queue this executor feeds counts: the base one and each model's (jobs naming a model wait there).
      const [base, models] = await Promise.all([queue.getWaitingCount(), this.#modelQueues!.waitingCount()]);
      waiting = base + models;
    } catch (err) {
      const e = this.#redisError(err, "enqueue");
      return DiffusionOutput.merge(requests.map((r) => errorOutput(r.requestId, e)));
    }
    if (waiting + requests.length > this.options.maxWaiting) {
      const e = new QueueFullError(`the queue ${this.#where} is full (${waiting} jobs waiting, maxWaiting ${this.options.maxWaiting})`, { data: { waiting, maxWaiting: this.options.maxWaiting, retryAfterMs: 1_000 } });
      return DiffusionOutput.merge(requests.map((r) => errorOutput(r.requestId, e)));
    }
    const timeoutMs = Math.min(opts.timeout ?? this.config.rpcTimeoutMs, this.options.timeoutMs ?? Number.POSITIVE_INFINITY);
    const parts = await Promise.all(requests.map((r) => this.#runOne(queue, waiters, r, timeoutMs, opts)));
    if (opts.signal?.aborted) throw opts.signal.reason;
    return DiffusionOutput.merge(parts);
  }

  async #runOne(queue: Queue, waiters: JobWaiters, r: OmniDiffusionRequest, timeoutMs: number, opts: ExecuteOptions): Promise<DiffusionOutput> {
    const id = r.requestId;
    const jobId = jobIdFor(id);
    if (!jobId) return errorOutput(id, new ValidationError(`request id "${id}" cannot be a queue job id (no ":" and not only digits)`, { field: "requestId" }));
    if (waiters.has(id)) return errorOutput(id, new ValidationError(`request id ${id} is already in flight on this executor`, { field: "requestId" }));
    const result = waiters.wait(id, opts.onProgress);
    // One deadline for the request: it passing, or the caller's signal, settles the waiter and stops the job.
    const dl = new Deadline(timeoutMs, opts.signal, () => new TimeoutError(`request ${id} passed its deadline of ${timeoutMs}ms on the queue`, { data: { requestId: id, timeoutMs } }));
    const onEnd = () => {
      waiters.settle(id, errorOutput(id, dl.callerAborted ? new AbortedError(`request ${id} was aborted`) : (dl.signal.reason as TimeoutError)));
      void this.abortRequest(id).catch(() => undefined);
    };
    if (dl.signal.aborted) onEnd();
    else dl.signal.addEventListener("abort", onEnd, { once: true });
    try {
      const data: JobData = { request: requestToDict(r), enqueuedAt: Date.now(), ...(opts.previewEvery?.[id] ? { previewEvery: opts.previewEvery[id] } : {}) };
      const target = r.model === null ? queue : await this.#queueOfModel(r.model);
      // Settled, then awaited below like every outcome: returning from here left the deadline's timer running
      // (a closed test process stayed alive for rpcTimeoutMs).
      if (target === null) waiters.settle(id, errorOutput(id, new NotFoundError(`no live worker on ${this.#where} serves model "${r.model}"`, { data: { field: "model", model: r.model } })));
      else {
        this.#jobQueues.set(id, target);
        await this.#enqueue(target, waiters, data, jobId);
      }
    } catch (err) {
      waiters.settle(id, errorOutput(id, this.#redisError(err, `enqueue of ${id}`)));
    }
    try {
      return await result;
    } finally {
      dl.signal.removeEventListener("abort", onEnd);
      dl.dispose();
      this.#jobQueues.delete(id);
    }
  }

  /** Adds the job (its id the request's, so a retry attaches to it); a stored result of that id settles it now. */
  async #enqueue(target: Queue, waiters: JobWaiters, data: JobData, jobId: string): Promise<void> {
    const job = await target.add("generate", data, {
      jobId,
      attempts: this.options.attempts,
      backoff: { type: "exponential", delay: 500 },
      removeOnComplete: { age: KEEP_FINISHED_S },
      removeOnFail: { age: KEEP_FINISHED_S },
    });
    // The same id may have run already (a retry): its stored result settles the waiter now.
    const fresh = await target.getJob(job.id!);
    if (fresh) waiters.settleFromJob(fresh);
  }

  /** The queue of `model`'s jobs; null when no live worker declares it (its jobs would wait for ever). */
  async #queueOfModel(model: string): Promise<Queue | null> {
    const served = (await this.liveWorkers()).some((w) => w.models?.includes(model));
    return served ? this.#modelQueues!.get(model) : null;
  }

  /**
   * Stops a request: a job still waiting is removed; one running is stopped by its worker at the next step
   * (told over pub/sub, and by a record its worker checks before starting, for a job picked up meanwhile).
   */
  override async abortRequest(requestId: string): Promise<void> {
    const { queue, client, waiters } = this.#ready();
    const jobId = jobIdFor(requestId);
    if (!jobId) return;
    // A request naming a model waits on that model's queue. Read before any await: a deadline's abort runs while
    // the request is settling, and its entry is gone once it has.
    const jobQueue = this.#jobQueues.get(requestId) ?? queue;
    try {
      await client.set(this.#keys.aborted(requestId), "1", "PX", ABORT_TTL_MS);
      await client.publish(this.#keys.abort, requestId);
      const job = await jobQueue.getJob(jobId);
      if (job && (await job.isWaiting().catch(() => false))) {
        await job.remove().catch(() => undefined); // it may have been picked up meanwhile: the worker stops it then
        waiters.settle(requestId, errorOutput(requestId, new AbortedError(`request ${requestId} was aborted while queued`)));
      }
    } catch (err) {
      throw this.#redisError(err, `abort of ${requestId}`);
    }
  }

  /** Redis answers a PING and at least one worker's heartbeat is live, within the deadline. */
  override async checkHealth(opts: { timeout?: number; signal?: AbortSignal } = {}): Promise<void> {
    const { client } = this.#ready();
    const ms = opts.timeout ?? this.options.healthTimeoutMs;
    const dl = new Deadline(ms, opts.signal, () => new TimeoutError(`health check of ${this.#where} timed out after ${ms}ms`, { data: { method: "health", timeoutMs: ms } }));
    const probe = (async () => {
      await client.ping();
      return (await this.liveWorkers()).length;
    })();
    let live: number;
    try {
      live = await dl.race(probe);
    } catch (err) {
      if (dl.callerAborted) throw opts.signal!.reason;
      if (dl.signal.aborted && err === dl.signal.reason) throw err;
      throw new UnhealthyError(`Redis at ${this.#where} is unreachable: ${this.#why(err)}`, { cause: err });
    } finally {
      dl.dispose();
    }
    if (live < 1) throw new UnhealthyError(`no live worker on ${this.#where} (start one: omni-diffusion worker --queue ${this.options.url})`, { data: { liveWorkers: 0 } });
  }

  protected async shutdown(): Promise<void> {
    const closed = new ClosedError("QueueDiffusionExecutor is shut down");
    this.#waiters?.failAll(closed);
    this.#rpc?.dispose(closed);
    this.#watch?.dispose();
    // A graceful close waits for a connection that may never come (Redis down): bounded, then the connections are cut.
    this.#events?.stop();
    await settleWithin(Promise.allSettled([this.#queue?.close(), this.#modelQueues?.close()]), CLOSE_TIMEOUT_MS);
    for (const c of [this.#client, this.#sub, this.#eventsConn]) c?.disconnect();
  }
}
