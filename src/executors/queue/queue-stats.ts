import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { Gauge, type Registry } from "prom-client";
import { queueKeys, redisNow } from "../../protocol/queue-protocol.js";

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
