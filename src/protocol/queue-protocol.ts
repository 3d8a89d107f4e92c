/**
 * What the `queue` executor and `omni-diffusion worker --queue` share, and nothing else: the Redis key and
 * channel names, the job and message shapes, the timing defaults, and how a `redis://` URL becomes
 * connection options. The worker side imports only this module, never the executor.
 */
import type { Redis, RedisOptions } from "ioredis";
import { ConfigError, type SerializedError } from "../errors/omni-error.js";

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
}

/** Data of one BullMQ job: one request. */
export interface JobData {
  /** The request as `OmniDiffusionRequest.toDict()` writes it. */
  request: Record<string, unknown>;
  /** Decode a preview every N steps into the job's progress. */
  previewEvery?: number;
  /** When the executor enqueued it, epoch ms (enqueue-to-start latency). */
  enqueuedAt: number;
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
  return `redis://${o.host}:${o.port}/${o.db ?? 0}`;
}

/**
 * Redis's own clock, ms. Heartbeat expiries are written and compared in it, so workers and servers on
 * machines whose clocks disagree still agree on who is live.
 */
export async function redisNow(client: Redis): Promise<number> {
  const [s, us] = await client.time();
  return Number(s) * 1000 + Math.floor(Number(us) / 1000);
}
