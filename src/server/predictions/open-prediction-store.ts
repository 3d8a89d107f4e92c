import type { ServerContext } from "../app/server-context.js";
import { PredictionStore } from "./prediction-store.js";
import type { PredictionStoreApi } from "./prediction-store-api.js";
import { RedisPredictionStore } from "./redis-prediction-store.js";

/** An executor whose work goes through a Redis queue (the `queue` executor) says where. */
interface RedisBacked {
  redisTarget?: () => { url: string; queue: string };
}

/**
 * The store of a server's predictions. On an executor backed by Redis (`queue`): that Redis, under the
 * queue's name, so every serve replica of that queue shares one history (a `--data-dir` then keeps only the
 * webhook deliveries of this replica). Otherwise SQLite in the data dir (in memory without one).
 */
export async function openPredictionStore(ctx: ServerContext): Promise<PredictionStoreApi> {
  const target = (ctx.engine.executor as RedisBacked).redisTarget?.();
  if (target) return RedisPredictionStore.open({ ...target, ttlMs: ctx.config.jobTtlMs });
  return PredictionStore.open(ctx.config.dataDir ?? null);
}
