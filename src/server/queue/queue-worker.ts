import { randomBytes } from "node:crypto";
import { createServer, type Server } from "node:http";
import { hostname } from "node:os";
import type { Job } from "bullmq";
import { Counter, Histogram, Registry } from "prom-client";
import { DiffusionEngine } from "../../engine/engine.js";
import type { OmniDiffusionConfigInput } from "../../core/config.js";
import { DiffusionOutput } from "../../core/output.js";
import type { OmniDiffusionRequest } from "../../core/request.js";
import { requestFromDict } from "../../protocol/request-codec.js";
import { AbortedError, ConfigError, toOmniError, type OmniError } from "../../errors/omni-error.js";
import {
  DEFAULT_HEARTBEAT_MS,
  DEFAULT_LOCK_MS,
  DEFAULT_MAX_STALLED,
  DEFAULT_QUEUE_NAME,
  DEFAULT_STALLED_INTERVAL_MS,
  HEARTBEAT_TTL_FACTOR,
  RedisConnectionWatch,
  quietRedisErrors,
  describeRedis,
  loadQueueSdk,
  parseJobData,
  queueKeys,
  subscribeWhenReady,
  whenReady,
  redisNow,
  redisOptions,
  registerQueueMetrics,
  type JobProgress,
  type RpcMessage,
  type RpcReply,
  type WorkerInfo,
  modelQueueName,
} from "../../protocol/queue-protocol.js";
import { toDiffusionOutput } from "../shared/wire-output.js";
import { uploadCapOf } from "../shared/edit-images.js";
import { settleWithin } from "../../utils/settle-within.js";
import { RpcAnswers } from "./rpc-answers.js";

/** How long close waits past the drain deadline for BullMQ to let go of the jobs handed back, ms. */
const CLOSE_GRACE_MS = 10_000;

/** Options of {@link startQueueWorker}. */
export interface QueueWorkerOptions {
  /** `redis://host:port/db`. */
  url: string;
  /** BullMQ queue name. Default `omni-diffusion`. */
  queueName?: string;
  /** Jobs run at once, all in one engine (its batch capacity: they share denoising steps). Default 4. */
  concurrency?: number;
  /** Config of the local engine (model, `numGpus` worker processes, threads, limits). */
  engine?: OmniDiffusionConfigInput;
  /** Job lock duration, ms (renewed every half of it while the job runs). Default 10 000. */
  lockMs?: number;
  /** How often stalled jobs are looked for, ms. Default 5 000. */
  stalledIntervalMs?: number;
  /** Heartbeat period, ms. Default 2 000. */
  heartbeatMs?: number;
  /** How long {@link QueueWorker.close} lets held jobs finish before handing them back to the queue, ms. Default 30 000. */
  drainTimeoutMs?: number;
  /** Port of `/metrics` and `/health` (0 = any free port); absent = not served. */
  metricsPort?: number;
  /** Interface of the metrics port. Default 127.0.0.1. */
  host?: string;
}

/** What a queue worker did, as {@link QueueWorker.close} reports it. */
export interface QueueWorkerSummary {
  /** Jobs that ended with images since the worker started. */
  ok: number;
  /** Jobs that ended with an error result (bad job data, a failed request, an abort). */
  error: number;
  /** Jobs handed back to the queue at shutdown, past the drain deadline. */
  handedBack: number;
  /** Jobs it held when close began (those drained, or handed back). */
  heldAtClose: number;
}

/** A running queue worker. */
export interface QueueWorker {
  /** This worker's id in the fleet (heartbeats, RPC replies, progress). */
  readonly id: string;
  /** `http://host:port` of `/metrics` and `/health`, when served. */
  readonly metricsUrl: string | undefined;
  /**
   * Stops pulling, lets held jobs finish (handing back what is left after `drainTimeoutMs`), then closes;
   * resolves with what it did. Idempotent.
   */
  close(): Promise<QueueWorkerSummary>;
}

/**
 * `omni-diffusion worker --queue`: pulls jobs from the Redis queue into a local engine. Up to `concurrency`
 * jobs run at once in that engine, so they share denoising steps (continuous batching) as on one machine.
 * BullMQ renews each job's lock from this process's event loop (the steps run in the engine's worker
 * processes); if this process dies, the locks run out and other workers take the jobs over. Heartbeats
 * in Redis make it count as live; it answers collective RPCs and aborts over pub/sub.
 *
 * @example
 * ```ts
 * const worker = await startQueueWorker({ url: "redis://127.0.0.1:6379/0", concurrency: 4, engine: { numGpus: 1 } });
 * process.once("SIGTERM", () => void worker.close());
 * ```
 */
export async function startQueueWorker(opts: QueueWorkerOptions): Promise<QueueWorker> {
  const conn = redisOptions(opts.url, { field: "--queue" });
  const queueName = opts.queueName ?? DEFAULT_QUEUE_NAME;
  if (!/^[A-Za-z0-9_.-]{1,100}$/.test(queueName)) throw new ConfigError(`--queue-name "${queueName}": letters, digits, _ . - only`, { field: "queueName" });
  const keys = queueKeys(queueName);
  const concurrency = opts.concurrency ?? 4;
  const heartbeatMs = opts.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
  const id = `${hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`;
  const { Queue, Redis, WaitingError, Worker } = await loadQueueSdk();
  const pub = new Redis(conn);
  const sub = new Redis(conn);
  const quiet = () => undefined; // connection errors: ioredis reconnects; heartbeats and jobs resume when Redis is back
  quietRedisErrors(pub);
  quietRedisErrors(sub);
  // Redis refusing the credentials is fatal at start (no reconnect fixes a password); a Redis not up yet is
  // waited for. Nothing BullMQ is created before Redis has answered: a refusal then leaves nothing behind.
  const watch = new RedisConnectionWatch(pub, conn, Number.POSITIVE_INFINITY);
  let engine: DiffusionEngine;
  const creating = DiffusionEngine.create({ batchWindowMs: 0, ...opts.engine });
  try {
    engine = await Promise.race([creating, watch.failed]);
    await Promise.race([whenReady(pub), watch.failed]);
  } catch (err) {
    void creating.then((e) => e.close(), quiet); // an engine still loading is closed once it is up
    watch.dispose();
    for (const c of [pub, sub]) c.disconnect();
    throw err;
  }
  // Say once per outage that Redis is unreachable (the worker keeps retrying), and once that it is back.
  let outage = false;
  pub.on("error", () => {
    if (outage) return;
    outage = true;
    process.emitWarning(`omni-diffusion worker: Redis at ${describeRedis(conn)} is unreachable (${watch.last?.message ?? "connection error"}); retrying`);
  });
  pub.on("ready", () => {
    if (outage) process.emitWarning(`omni-diffusion worker: Redis at ${describeRedis(conn)} is reachable again`);
    outage = false;
  });

  let closing: Promise<QueueWorkerSummary> | null = null;
  const registry = new Registry();
  const started = new Histogram({ name: "omni_queue_enqueue_to_start_seconds", help: "Time from enqueueing a job to this worker starting it.", buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60], registers: [registry] });
  const jobsDone = new Counter({ name: "omni_queue_worker_jobs_total", help: "Jobs this worker finished, by outcome (ok, error, handed_back).", labelNames: ["outcome"], registers: [registry] });

  /** Jobs this worker holds, by request id, and those it is handing back. */
  const held = new Map<string, { job: Job; token?: string }>();
  const handingBack = new Set<string>();

  const counts = { ok: 0, error: 0, handedBack: 0 };
  const processor = async (job: Job, token?: string): Promise<unknown> => {
    const raw = job.data as { request?: { request_id?: unknown } } | null;
    // Anyone who can write to Redis can add a job: its data is checked before anything reads it.
    const rawId = typeof raw?.request?.request_id === "string" ? raw.request.request_id : undefined;
    let requestId = rawId ?? String(job.id);
    const failed = (err: OmniError) => {
      jobsDone.inc({ outcome: "error" });
      counts.error++;
      return new DiffusionOutput({ errors: { [requestId]: err } }).toDict();
    };
    let data: ReturnType<typeof parseJobData>;
    try {
      data = parseJobData(job.data);
    } catch (err) {
      return failed(toOmniError(err));
    }
    requestId = String(data.request.request_id ?? job.id);
    started.observe(Math.max(0, Date.now() - data.enqueuedAt) / 1000);
    if (await pub.exists(keys.aborted(requestId))) return failed(new AbortedError(`request ${requestId} was aborted before it started`));
    let r: OmniDiffusionRequest;
    try {
      r = requestFromDict(data.request, { images: uploadCapOf(engine.requestLimits, engine.modelLimits) });
    } catch (err) {
      return failed(toOmniError(err));
    }
    held.set(requestId, { job, token });
    try {
      const out = await engine.generate(r, {
        previewEvery: data.previewEvery,
        onProgress: (p) => {
          const progress: JobProgress = { step: p.step, totalSteps: p.totalSteps, worker: id, ...(p.preview ? { preview: new DiffusionOutput({ output: p.preview }).toDict().output } : {}) };
          job.updateProgress(progress as unknown as object).catch(quiet);
        },
      });
      jobsDone.inc({ outcome: "ok" });
      counts.ok++;
      return toDiffusionOutput(out).toDict();
    } catch (err) {
      if (handingBack.has(requestId)) {
        // Shutting down past the drain deadline: the job goes back to the queue for another worker, not failed.
        await job.moveToWait(token);
        jobsDone.inc({ outcome: "handed_back" });
        counts.handedBack++;
        throw new WaitingError();
      }
      return failed(toOmniError(err));
    } finally {
      held.delete(requestId);
    }
  };

  const worker = new Worker(queueName, processor, {
    connection: conn,
    concurrency,
    lockDuration: opts.lockMs ?? DEFAULT_LOCK_MS,
    stalledInterval: opts.stalledIntervalMs ?? DEFAULT_STALLED_INTERVAL_MS,
    maxStalledCount: DEFAULT_MAX_STALLED,
    autorun: false,
  });
  worker.on("error", quiet);
  // One more BullMQ worker per model this engine serves: its jobs come only to workers that serve it.
  const modelWorkers = Object.keys(engine.config.models).map((m) => {
    const w = new Worker(modelQueueName(queueName, m), processor, { connection: conn, concurrency, lockDuration: opts.lockMs ?? DEFAULT_LOCK_MS, stalledInterval: opts.stalledIntervalMs ?? DEFAULT_STALLED_INTERVAL_MS, maxStalledCount: DEFAULT_MAX_STALLED, autorun: false });
    w.on("error", quiet);
    return w;
  });

  const info: WorkerInfo = { id, host: hostname(), pid: process.pid, ranks: engine.config.numGpus, concurrency, startedAt: Date.now(), models: Object.keys(engine.config.models) };
  // Live means able to hear RPCs: no heartbeat while the subscriber is (re)connecting, so a caller never
  // waits on a worker that cannot hear it (resends cover the moment between reconnecting and resubscribing).
  const beat = async () => {
    if (sub.status !== "ready") return;
    const now = await redisNow(pub);
    await pub
      .multi()
      .zadd(keys.workers, now + heartbeatMs * HEARTBEAT_TTL_FACTOR, id)
      .hset(keys.workerInfo, id, JSON.stringify(info))
      .zremrangebyscore(keys.workers, "-inf", now)
      .exec();
  };
  const heartbeat = setInterval(() => void beat().catch(quiet), heartbeatMs);

  sub.on("message", (channel: string, text: string) => {
    if (channel === keys.abort) {
      if (held.has(text)) void engine.abort(text).catch(quiet);
    } else if (channel === keys.rpc) {
      void answerRpc(text).catch(quiet);
    }
  });
  const rpcAnswers = new RpcAnswers(id, (msg) => engine.collectiveRpc(msg.method, { args: msg.args ?? [], kwargs: msg.kwargs ?? {}, timeout: Math.max(1, msg.timeoutMs) }));
  const answerRpc = async (text: string) => {
    let msg: RpcMessage;
    try {
      msg = JSON.parse(text) as RpcMessage;
    } catch {
      return;
    }
    const reply = rpcAnswers.answer(msg);
    if (reply) await pub.publish(keys.rpcReply, JSON.stringify(await reply));
  };

  // Metrics: this worker's counters plus the queue's gauges (any worker can be scraped for the fleet's depth).
  const statsQueue = new Queue(queueName, { connection: { ...conn, enableOfflineQueue: false } });
  statsQueue.on("error", quiet);
  registerQueueMetrics(registry, statsQueue);
  let server: Server | undefined;
  let metricsUrl: string | undefined;
  if (opts.metricsPort !== undefined) {
    server = createServer((req, res) => {
      if (req.url === "/metrics") {
        registry.metrics().then(
          (text) => res.writeHead(200, { "content-type": registry.contentType }).end(text),
          (err: unknown) => res.writeHead(500).end(String(err)),
        );
      } else if (req.url === "/health") {
        const ok = !closing && pub.status === "ready" && worker.isRunning();
        res.writeHead(ok ? 200 : 503, { "content-type": "application/json" }).end(JSON.stringify({ status: ok ? "ok" : "unavailable", worker: id, redis: pub.status, held: held.size }));
      } else res.writeHead(404).end();
    });
    const host = opts.host ?? "127.0.0.1";
    await new Promise<void>((resolve, reject) => server!.once("error", reject).listen(opts.metricsPort, host, () => resolve()));
    const addr = server.address();
    metricsUrl = `http://${host}:${typeof addr === "object" && addr ? addr.port : opts.metricsPort}`;
  }

  await subscribeWhenReady(sub, keys.rpc, keys.abort);
  await beat();
  for (const w of [worker, ...modelWorkers]) void w.run().catch(quiet);
  await Promise.all([worker, ...modelWorkers].map((w) => w.waitUntilReady()));

  return {
    id,
    metricsUrl,
    close() {
      closing ??= (async () => {
        const heldAtClose = held.size;
        clearInterval(heartbeat);
        await pub.zrem(keys.workers, id).catch(quiet);
        // Stop pulling now; held jobs finish, or are handed back to the queue once the drain deadline passes.
        const drained = Promise.all([worker, ...modelWorkers].map((w) => w.close()));
        const drainMs = opts.drainTimeoutMs ?? 30_000;
        const deadline = setTimeout(() => {
          for (const requestId of held.keys()) {
            handingBack.add(requestId);
            void engine.abort(requestId).catch(quiet);
          }
        }, drainMs);
        // Bounded: with Redis unreachable BullMQ's close can wait for ever; the locks then hand the jobs back.
        await settleWithin(drained, drainMs + CLOSE_GRACE_MS, { unref: true });
        clearTimeout(deadline);
        await Promise.allSettled([engine.close(), statsQueue.close(), new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)))]);
        watch.dispose();
        for (const c of [pub, sub]) c.disconnect();
        return { ...counts, heldAtClose };
      })();
      return closing;
    },
  };
}
