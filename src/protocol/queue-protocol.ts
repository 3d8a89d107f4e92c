/**
 * What the `queue` executor and `omni-diffusion worker --queue` share, and nothing else: the Redis key and
 * channel names, the job and message shapes, the timing defaults, how a `redis://` URL becomes
 * connection options, and the queue's stats and gauges (both sides serve them). The worker side imports
 * only this module, never the executor.
 */
import type * as BullMQ from "bullmq";
import type { Queue } from "bullmq";
import type { Redis, RedisOptions } from "ioredis";
import { Gauge, type Registry } from "prom-client";
import { z } from "zod";
import { ConfigError, OmniError, TransportError, UnauthorizedError, type SerializedError } from "../errors/omni-error.js";
import { zodToValidationError } from "../utils/zod-error.js";

/** The classes of BullMQ and ioredis that either side constructs. */
export interface QueueSdk {
  Queue: typeof BullMQ.Queue;
  Worker: typeof BullMQ.Worker;
  WaitingError: typeof BullMQ.WaitingError;
  Redis: typeof Redis;
}

let sdk: Promise<QueueSdk> | undefined;

/**
 * Imports BullMQ and ioredis on first use (the queue executor's `init`, `startQueueWorker`): importing the
 * package does not load them (bullmq alone took about 0.5 s of every `import "omni-diffusion"`).
 */
export function loadQueueSdk(): Promise<QueueSdk> {
  sdk ??= Promise.all([import("bullmq"), import("ioredis")]).then(([b, r]) => ({ Queue: b.Queue, Worker: b.Worker, WaitingError: b.WaitingError, Redis: r.Redis }));
  return sdk;
}

/** Default BullMQ queue name. */
export const DEFAULT_QUEUE_NAME = "omni-diffusion";

/**
 * How long a worker holds a job's lock without renewing it, ms. BullMQ renews it every half of this from
 * the worker's event loop, which the denoising steps never block (they run in the engine's worker
 * processes), so a long job keeps its lock however many steps it takes; a killed worker stops renewing and
 * its jobs are handed back once the lock runs out and a stall check passes (at most lock + stalled interval).
 */
export const DEFAULT_LOCK_MS = 10_000;
/** How often every worker looks for jobs whose lock ran out (stalled jobs) and puts them back in the queue, ms. */
export const DEFAULT_STALLED_INTERVAL_MS = 5_000;
/** A job that stalls more often than this fails for good (a request that kills every worker it lands on). */
export const DEFAULT_MAX_STALLED = 3;
/** How often a worker announces itself, ms; it counts as live for {@link HEARTBEAT_TTL_FACTOR} times this. */
export const DEFAULT_HEARTBEAT_MS = 2_000;
/** Missed heartbeats after which a worker no longer counts as live. */
export const HEARTBEAT_TTL_FACTOR = 3;
/** How long finished jobs stay in Redis, s: a retry with the same request id within it gets the same result. */
export const KEEP_FINISHED_S = 600;
/** How long an abort stays on record, ms, so a job that starts after its abort was sent is still stopped. */
export const ABORT_TTL_MS = 600_000;

/** Redis keys and pub/sub channels of one queue, beside BullMQ's own `bull:<queue>:*` keys. */
export function queueKeys(queue: string) {
  const base = `omni:${queue}`;
  return {
    /** Sorted set: worker id → the time (ms) its last heartbeat expires. */
    workers: `${base}:workers`,
    /** Hash: worker id → {@link WorkerInfo} JSON. */
    workerInfo: `${base}:worker-info`,
    /** Channel of {@link RpcMessage}s, to every worker. */
    rpc: `${base}:rpc`,
    /** Channel of {@link RpcReply}s. */
    rpcReply: `${base}:rpc-reply`,
    /** Channel of aborted request ids, to every worker. */
    abort: `${base}:abort`,
    /** Key recording that a request was aborted (checked before a job starts). */
    aborted: (requestId: string) => `${base}:aborted:${requestId}`,
  };
}

/** What a worker tells the fleet about itself with each heartbeat. */
export interface WorkerInfo {
  id: string;
  host: string;
  pid: number;
  /** Local ranks (engine worker processes). */
  ranks: number;
  /** Jobs it runs at once (its batch capacity). */
  concurrency: number;
  startedAt: number;
  /** The models it serves (issue 24); it pulls each one's jobs from {@link modelQueueName}. Absent: an older worker, the base queue only. */
  models?: string[];
}

/**
 * The BullMQ queue of one model's jobs: one queue per model, so a worker pulls only the jobs of models it serves
 * (BullMQ workers cannot filter a queue's jobs). A name's characters outside BullMQ's safe set are hex-escaped.
 * Jobs without a model go to the base queue, which every worker pulls for its default model.
 */
export function modelQueueName(queue: string, model: string): string {
  return `${queue}.model.${model.replace(/[^A-Za-z0-9_-]/g, (c) => `.${c.charCodeAt(0).toString(16)}`)}`;
}

/** Data of one BullMQ job: one request. */
export interface JobData {
  /** The request as `requestToDict` (protocol/request-codec.ts) writes it; read back with `requestFromDict`. */
  request: Record<string, unknown>;
  /** Decode a preview every N steps into the job's progress. */
  previewEvery?: number;
  /** When the executor enqueued it, epoch ms (enqueue-to-start latency). */
  enqueuedAt: number;
}

/**
 * What a worker accepts as job data. Anyone who can write to Redis can add a job, so nothing in it is
 * trusted: a malformed job is answered with a ValidationError on that job, never a crash elsewhere
 * (an `enqueuedAt` of "x" once reached prom-client's histogram as NaN and threw there).
 */
const jobDataSchema = z.object({
  request: z.record(z.string(), z.unknown()),
  previewEvery: z.number().int().min(1).max(10_000).optional(),
  enqueuedAt: z.number().finite().min(0),
});

/** Checks a job's data (see {@link JobData}); throws a ValidationError naming the bad field (`enqueuedAt`, `request`, ...). */
export function parseJobData(raw: unknown): JobData {
  const r = jobDataSchema.safeParse(raw);
  if (!r.success) throw zodToValidationError(r.error, "queue job data");
  return r.data;
}

/** A job's progress, as `job.updateProgress` stores it. */
export interface JobProgress {
  step: number;
  totalSteps: number;
  /** Preview images as `DiffusionOutput.toDict().output` writes them. */
  preview?: unknown[];
  /** The worker that holds the job. */
  worker: string;
}

/** A collective RPC broadcast to every worker. */
export interface RpcMessage {
  id: string;
  method: string;
  args: unknown[];
  kwargs: Record<string, unknown>;
  /** Remaining time of the caller's deadline, ms. */
  timeoutMs: number;
  /**
   * Set on a resend: only these workers answer (the others already did). Pub/sub delivers at most once, so
   * a caller missing replies sends the call again under the same id; a worker answers an id it has seen
   * with the reply it already gave, never running the method twice.
   */
  only?: string[];
}

/** One worker's reply: its local ranks' replies in rank order, or its error. */
export interface RpcReply {
  id: string;
  worker: string;
  replies?: unknown[];
  error?: SerializedError;
}

/**
 * A job id for a request id: the request id itself, so enqueueing the same request twice (a retry) finds
 * the job already there instead of running it again. BullMQ refuses ids with `:` and all-digit ids; those
 * request ids are returned as null and the caller refuses them.
 */
export function jobIdFor(requestId: string): string | null {
  return requestId.includes(":") || /^\d+$/.test(requestId) ? null : requestId;
}

/**
 * `redis://[:password@]host:port[/db]` (or `rediss://` for TLS) → ioredis options. `failFast` makes commands
 * fail at once while disconnected (the executor's calls) instead of queueing until Redis is back.
 */
export function redisOptions(url: string, opts: { failFast?: boolean; field?: string } = {}): RedisOptions {
  const field = opts.field ?? "executorOptions.url";
  let u: URL;
  try {
    u = new URL(url);
  } catch (err) {
    throw new ConfigError(`${field}: "${url}" is not a URL; expected redis://host:port/db`, { field, cause: err });
  }
  if (u.protocol !== "redis:" && u.protocol !== "rediss:") {
    throw new ConfigError(`${field}: "${url}" must start with redis:// or rediss://`, { field });
  }
  const db = u.pathname.replace(/^\//, "");
  if (db && !/^\d+$/.test(db)) throw new ConfigError(`${field}: the database in "${url}" must be a number (redis://host:port/0)`, { field });
  return {
    host: u.hostname || "127.0.0.1",
    port: u.port ? Number(u.port) : 6379,
    db: db ? Number(db) : 0,
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(u.protocol === "rediss:" ? { tls: {} } : {}),
    // BullMQ's blocking connections need this; it also stops ioredis from failing commands after 20 retries.
    maxRetriesPerRequest: null,
    // Reconnect quickly and keep trying: a restarted Redis is picked up within a second or two.
    retryStrategy: (times: number) => Math.min(200 * times, 2_000),
    ...(opts.failFast ? { enableOfflineQueue: false } : {}),
  };
}

/** `host:port/db` of a connection, for messages (never the password). */
export function describeRedis(o: RedisOptions): string {
  return `${o.tls ? "rediss" : "redis"}://${o.host}:${o.port}/${o.db ?? 0}`;
}

/**
 * Redis's own clock, ms. Heartbeat expiries are written and compared in it, so workers and servers on
 * machines whose clocks disagree still agree on who is live.
 */
export async function redisNow(client: Redis): Promise<number> {
  const [s, us] = await client.time();
  return Number(s) * 1000 + Math.floor(Number(us) / 1000);
}

/** Resolves once `client` is connected and past its ready check (now, if it already is). */
export function whenReady(client: Redis): Promise<void> {
  if (client.status === "ready") return Promise.resolve();
  return new Promise((resolve) => client.once("ready", () => resolve()));
}

/**
 * SUBSCRIBE once `conn` is ready. ioredis 5 writes a SUBSCRIBE at once while the connection is still in its
 * handshake (status "connect": SUBSCRIBE may run while Redis loads); its ready check's INFO is then refused in
 * subscriber mode, the connection is torn down and comes back without the subscription, so the channel stays
 * deaf (collectiveRpc replies never heard: the CI hang of the queue conformance run). After "ready" the
 * handshake is over, and ioredis resubscribes by itself after a reconnect.
 */
export async function subscribeWhenReady(conn: Redis, ...channels: string[]): Promise<void> {
  await whenReady(conn);
  await conn.subscribe(...channels);
}

/** Redis replies that mean the credentials are missing or wrong: a retry with the same URL cannot help. */
const AUTH_REPLY = /^(NOAUTH|WRONGPASS)\b|invalid password|Client sent AUTH, but no password is set/i;
/** TLS errors no reconnect cures: the certificate is not trusted or not for this host, or the port is not TLS. */
const TLS_FAILURE = /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|ERR_TLS_|ERR_SSL_/;
/** Socket errors that mean nothing can be reached at the address. */
const UNREACHABLE_ERRNOS = new Set(["ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN"]);

/**
 * A connection error from ioredis as the typed error it means, or null for one a reconnect may cure
 * (a reset, a timeout). Credentials Redis refuses → UnauthorizedError; nothing listening, no route, an
 * unknown host or a TLS handshake that cannot succeed → TransportError with `data.unreachable` and `data.errno`. Messages name `host:port`, never
 * the password.
 */
export function redisConnectionError(err: unknown, o: RedisOptions): OmniError | null {
  const where = describeRedis(o);
  const message = err instanceof Error ? err.message : String(err);
  if (AUTH_REPLY.test(message)) {
    const hint = o.password ? "the password in the URL is wrong" : "it needs a password: redis://:<password>@host:port/db (or rediss:// for TLS)";
    return new UnauthorizedError(`Redis at ${where} refused the credentials (${message.split("\n")[0]}): ${hint}`, { cause: err, data: { url: where } });
  }
  const errno = (err as { code?: unknown } | null)?.code;
  if (typeof errno === "string" && TLS_FAILURE.test(errno)) {
    // A certificate this process does not trust, or TLS against a plain port: no reconnect changes that.
    return new TransportError(`Redis at ${where}: the TLS connection to ${o.host}:${o.port} failed (${errno}: ${message.split("\n")[0]}); for a private CA start with NODE_EXTRA_CA_CERTS=<ca.pem>`, {
      cause: err,
      data: { url: where, errno, unreachable: true },
    });
  }
  if (typeof errno === "string" && UNREACHABLE_ERRNOS.has(errno)) {
    const words = errno === "ECONNREFUSED" ? "connection refused" : errno === "ENOTFOUND" || errno === "EAI_AGAIN" ? "unknown host" : "no route";
    return new TransportError(`Redis at ${where}: ${words} at ${o.host}:${o.port} (${message}); is redis-server running there?`, {
      cause: err,
      data: { url: where, errno, unreachable: true },
    });
  }
  return null;
}

/**
 * Listens for an ioredis client's errors (reported through the calls and health checks that meet them, not as
 * events), and keeps listening on the socket that failed: ioredis handles only the first `error` of each socket
 * (`once`), and a TLS socket can raise a second one (an untrusted certificate, then the server's alert as the
 * socket closes), which Node would throw as an uncaught exception and end the process.
 */
export function quietRedisErrors(client: Redis): void {
  const ignore = () => undefined;
  const absorbed = new WeakSet<object>();
  client.on("error", () => {
    const stream = (client as unknown as { stream?: NodeJS.EventEmitter }).stream;
    if (stream && !absorbed.has(stream)) {
      absorbed.add(stream);
      stream.on("error", ignore);
    }
  });
}

/**
 * Watches one ioredis connection for failures no reconnect will cure, so a caller waiting on it can stop
 * at once: `failed` rejects with an UnauthorizedError when Redis refuses the credentials, or with the
 * unreachable TransportError once the address has refused connections for `refusedTimeoutMs` without a
 * success between (never, for `Infinity`: a worker waits for a Redis that is not up yet). `last` is the latest connection error, typed where it can be, for other messages.
 */
export class RedisConnectionWatch {
  readonly failed: Promise<never>;
  last: OmniError | null = null;
  #timer: NodeJS.Timeout | undefined;
  #dispose: () => void;

  constructor(client: Redis, o: RedisOptions, refusedTimeoutMs: number) {
    let reject!: (e: OmniError) => void;
    this.failed = new Promise<never>((_, r) => (reject = r));
    this.failed.catch(() => undefined); // Read by whoever races it; never an unhandled rejection.
    const onError = (err: Error) => {
      const e = redisConnectionError(err, o);
      this.last = e ?? new TransportError(`Redis at ${describeRedis(o)}: ${err.message}`, { cause: err, data: { url: describeRedis(o) } });
      if (e instanceof UnauthorizedError) return reject(e);
      if (!e?.data.unreachable || this.#timer || !Number.isFinite(refusedTimeoutMs)) return;
      // Refused from now on: give it refusedTimeoutMs (a Redis restarting), then stop, unless it answers meanwhile.
      this.#timer = setTimeout(() => reject((this.last?.data.unreachable ? this.last : e) as OmniError), refusedTimeoutMs);
      this.#timer.unref?.();
    };
    const onReady = () => {
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.last = null;
    };
    client.on("error", onError);
    client.on("ready", onReady);
    this.#dispose = () => {
      clearTimeout(this.#timer);
      client.off("error", onError);
      client.off("ready", onReady);
    };
  }

  /** Stops watching (the timer included). */
  dispose(): void {
    this.#dispose();
  }
}

// ---- queue stats: read from Redis by either side (the executor's stats(), both sides' gauges) ----

/** What an autoscaler needs to know about one queue. */
export interface QueueStats {
  waiting: number;
  active: number;
  delayed: number;
  failed: number;
  completed: number;
  /** Age of the oldest job still waiting for a worker, s (0 when none waits), by Redis's clock against the enqueuer's. */
  oldestWaitingAgeSeconds: number;
  /** Workers whose heartbeat has not expired. */
  liveWorkers: number;
}

/** Reads the queue's counts, its oldest waiting job and its live workers from Redis. */
export async function readQueueStats(queue: Queue): Promise<QueueStats> {
  const keys = queueKeys(queue.name);
  const client = (await queue.client) as unknown as Redis;
  const now = await redisNow(client);
  const [counts, oldest, live] = await Promise.all([
    queue.getJobCounts("waiting", "active", "delayed", "failed", "completed"),
    queue.getJobs(["wait"], 0, 0, true),
    client.zcount(keys.workers, now, "+inf"),
  ]);
  const first = oldest[0];
  return {
    waiting: counts.waiting ?? 0,
    active: counts.active ?? 0,
    delayed: counts.delayed ?? 0,
    failed: counts.failed ?? 0,
    completed: counts.completed ?? 0,
    oldestWaitingAgeSeconds: first ? Math.max(0, (now - first.timestamp) / 1000) : 0,
    liveWorkers: live,
  };
}

/** The gauge names of {@link registerQueueMetrics} (docs/fleet.md says which to scale on). */
export const QUEUE_METRICS = {
  jobs: "omni_queue_jobs",
  oldestWaiting: "omni_queue_oldest_waiting_seconds",
  liveWorkers: "omni_queue_live_workers",
  up: "omni_queue_redis_up",
} as const;

/**
 * Registers the queue gauges in `registry`, read from Redis at each scrape: `omni_queue_jobs{state}`
 * (waiting, active, delayed, failed, completed), `omni_queue_oldest_waiting_seconds`,
 * `omni_queue_live_workers`, and `omni_queue_redis_up` (0 when Redis could not be read; the others then keep
 * their last values).
 */
export function registerQueueMetrics(registry: Registry, queue: Queue): void {
  const registers = [registry];
  const labels = { queue: queue.name };
  // prom-client collects every gauge of a scrape concurrently: they share one read of Redis per scrape.
  let pending: Promise<QueueStats | null> | null = null;
  const snapshot = () => {
    pending ??= readQueueStats(queue)
      .catch(() => null)
      .finally(() => setImmediate(() => (pending = null)));
    return pending;
  };
  new Gauge({
    name: QUEUE_METRICS.jobs,
    help: "Jobs in the Redis queue by state.",
    labelNames: ["queue", "state"],
    registers,
    async collect() {
      const s = await snapshot();
      if (s) for (const state of ["waiting", "active", "delayed", "failed", "completed"] as const) this.set({ ...labels, state }, s[state]);
    },
  });
  // The single-valued gauges differ only in name, help and what they read from the snapshot.
  const single = (name: string, help: string, value: (s: QueueStats | null) => number | null) =>
    new Gauge({
      name,
      help,
      labelNames: ["queue"],
      registers,
      async collect() {
        const v = value(await snapshot());
        if (v !== null) this.set(labels, v);
      },
    });
  single(QUEUE_METRICS.oldestWaiting, "Age of the oldest job waiting for a worker, seconds.", (s) => s?.oldestWaitingAgeSeconds ?? null);
  single(QUEUE_METRICS.liveWorkers, "Workers with a live heartbeat in Redis.", (s) => s?.liveWorkers ?? null);
  single(QUEUE_METRICS.up, "1 when the last scrape could read the queue from Redis.", (s) => (s ? 1 : 0));
}
