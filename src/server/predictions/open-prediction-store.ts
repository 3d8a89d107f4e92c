import { QueueDiffusionExecutor } from "../../executors/queue-executor.js";
import type { ServerContext } from "../app/server-context.js";
import { PredictionStore } from "./prediction-store.js";
import type { PredictionStoreApi } from "./prediction-store-api.js";
import { RedisPredictionStore } from "./redis-prediction-store.js";

/**
 * The store of a server's predictions. On the `queue` executor: Redis, at the executor's URL and under its
 * queue name, so every serve replica of that queue shares one history (a `--data-dir` then keeps only the
 * webhook deliveries of this replica). Otherwise SQLite in the data dir (in memory without one).
 */
export async function openPredictionStore(ctx: ServerContext): Promise<PredictionStoreApi> {
  const ex = ctx.engine.executor;
  if (ex instanceof QueueDiffusionExecutor) return RedisPredictionStore.open({ url: ex.options.url, queue: ex.options.queue, ttlMs: ctx.config.jobTtlMs });
  return PredictionStore.open(ctx.config.dataDir ?? null);
}
