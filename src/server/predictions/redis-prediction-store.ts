import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import { loadQueueSdk, quietRedisErrors, redisOptions, whenReady } from "../../protocol/queue-protocol.js";
import { settleWithin } from "../../utils/settle-within.js";
import type { WebhookEvent } from "./webhook-types.js";
import type { PredictionRecord, PredictionStatus } from "./prediction-record.js";
import type { NewPrediction, PredictionFilesApi, PredictionPage, PredictionStoreApi } from "./prediction-store-api.js";
import { RedisPredictionEvents } from "./redis-prediction-events.js";
import { FINISH, REQUEUE, START, APPEND_LOG, ADOPT } from "./redis-prediction-scripts.js";

/** Where a {@link RedisPredictionStore} keeps its keys and how long completed predictions live. */
export interface RedisPredictionStoreOptions {
  /** `redis://[:password@]host:port[/db]`: the queue executor's. */
  url: string;
  /** The queue's name: replicas on one queue share one history; another queue on the same Redis has its own. */
  queue: string;
  /** A completed prediction, its logs and images expire this long after it completed (`--job-ttl`). */
  ttlMs: number;
}

/** How long a replica's lease lives without renewal: then its pending predictions are taken over by another replica. */
export const REPLICA_LEASE_MS = 15_000;
/** Images outlive their record's TTL by this much (they are written just before it completes). */
const FILE_MARGIN_MS = 60_000;

type Hash = Record<string, string>;

function fromHash(h: Hash): PredictionRecord {
  const num = (v: string | undefined) => (v === undefined || v === "" ? null : Number(v));
  return {
    seq: Number(h.seq),
    id: h.id!,
    token: h.token!,
    model: h.model!,
    version: h.version!,
    input: JSON.parse(h.input!) as Record<string, unknown>,
    status: h.status as PredictionStatus,
    output: h.output ? (JSON.parse(h.output) as string[]) : null,
    error: h.error ? h.error : null,
    logs: h.logs ?? "",
    createdAt: Number(h.created_at),
    startedAt: num(h.started_at),
    completedAt: num(h.completed_at),
    deadline: num(h.deadline),
    webhook: h.webhook ? h.webhook : null,
    webhookEventsFilter: h.filter ? (JSON.parse(h.filter) as WebhookEvent[]) : null,
    runs: Number(h.runs ?? 0),
  };
}

/**
 * Predictions in Redis, for `serve` on the `queue` executor: every replica pointed at the same Redis and
 * queue sees one history (create on one, get, list, cancel, stream and fetch images on any). Each prediction
 * is a hash whose transitions are Lua scripts (exactly once across the fleet); images are keys beside it;
 * completion sets a TTL of `--job-ttl` on both, so retention needs no sweeper (the list index is trimmed as
 * entries expire). Events cross replicas on a pub/sub channel; a cancel for a run held by another replica
 * reaches it on another channel. Each replica renews a lease: the pending predictions of a replica whose
 * lease ran out (it died) are taken over by the others (the runner asks every {@link adoptEveryMs}).
 */
export class RedisPredictionStore implements PredictionStoreApi {
  readonly files: PredictionFilesApi;
  readonly events: RedisPredictionEvents;
  readonly replicaId = randomUUID();
  /** Half a lease: a dead replica's predictions are taken over within 1.5 leases of its last renewal. */
  readonly adoptEveryMs = REPLICA_LEASE_MS / 2;
  readonly #r: Redis;
  readonly #sub: Redis;
  readonly #p: string;
  readonly #ttlMs: number;
  readonly #lease: NodeJS.Timeout;
  #onCancel: ((id: string) => void) | null = null;

  private constructor(r: Redis, sub: Redis, o: RedisPredictionStoreOptions) {
    this.#r = r;
    this.#sub = sub;
    this.#p = `omni-diffusion:${o.queue}:predictions:`;
    this.#ttlMs = o.ttlMs;
    this.events = new RedisPredictionEvents(`${this.#p}events`, this.replicaId, r, (id) => this.get(id));
    this.files = {
      write: async (id, name, png) => void (await r.set(this.#file(id, name), png, "PX", this.#ttlMs + FILE_MARGIN_MS)),
      read: (id, name) => r.getBuffer(this.#file(id, name)),
      remove: async (id) => {
        const out = await r.hget(this.#rec(id), "output");
        const names = out ? (JSON.parse(out) as string[]) : [];
        if (names.length) await r.del(...names.map((n) => this.#file(id, n)));
      },
    };
    const renew = () => void r.set(`${this.#p}replica:${this.replicaId}`, String(process.pid), "PX", REPLICA_LEASE_MS).catch(() => undefined);
    renew();
    this.#lease = setInterval(renew, REPLICA_LEASE_MS / 3).unref();
  }

  /** Connects (the Redis client is loaded only now: a serve without the queue executor never imports it). */
  static async open(o: RedisPredictionStoreOptions): Promise<RedisPredictionStore> {
    const { Redis } = await loadQueueSdk();
    const opts = redisOptions(o.url);
    // Commands fail at once while Redis is unreachable (no offline queue): a shutdown then never waits on it.
    const r = new Redis({ ...opts, enableOfflineQueue: false });
    const sub = new Redis(opts);
    for (const c of [r, sub]) quietRedisErrors(c);
    try {
      await Promise.all([whenReady(r), whenReady(sub)]);
      const store = new RedisPredictionStore(r, sub, o);
      await sub.subscribe(store.events.channel, `${store.#p}cancel`);
      sub.on("message", (channel: string, msg: string) => {
        if (channel === store.events.channel) store.events.receive(msg);
        else store.#onCancel?.(msg);
      });
      // ioredis resubscribes on reconnect; what was published meanwhile is lost, so streams catch up from the store.
      sub.on("ready", () => store.events.catchUp());
      return store;
    } catch (err) {
      r.disconnect();
      sub.disconnect();
      throw err;
    }
  }

  #rec(id: string): string {
    return `${this.#p}p:${id}`;
  }

  #file(id: string, name: string): string {
    return `${this.#p}f:${id}:${name}`;
  }

  get #index(): string {
    return `${this.#p}index`;
  }

  get #pending(): string {
    return `${this.#p}pending`;
  }

  get #done(): string {
    return `${this.#p}done`;
  }

  async insert(p: NewPrediction): Promise<PredictionRecord> {
    const seq = await this.#r.incr(`${this.#p}seq`);
    const h: Hash = {
      seq: String(seq),
      id: p.id,
      token: p.token,
      model: p.model,
      version: p.version,
      input: JSON.stringify(p.input),
      status: "starting",
      logs: "",
      created_at: String(p.createdAt),
      deadline: p.deadline === null ? "" : String(p.deadline),
      webhook: p.webhook ?? "",
      filter: p.webhookEventsFilter === null ? "" : JSON.stringify(p.webhookEventsFilter),
      runs: "0",
      owner: this.replicaId,
    };
    await this.#r.multi().hset(this.#rec(p.id), h).zadd(this.#index, seq, p.id).sadd(this.#pending, p.id).exec();
    return fromHash(h);
  }

  async get(id: string): Promise<PredictionRecord | null> {
    const h = await this.#r.hgetall(this.#rec(id));
    return h.id ? fromHash(h) : null;
  }

  async #hashes(ids: string[]): Promise<(Hash | null)[]> {
    if (!ids.length) return [];
    const pipe = this.#r.pipeline();
    for (const id of ids) pipe.hgetall(this.#rec(id));
    const res = (await pipe.exec()) ?? [];
    return res.map(([err, h]) => (!err && (h as Hash).id ? (h as Hash) : null));
  }

  async #many(ids: string[]): Promise<(PredictionRecord | null)[]> {
    return (await this.#hashes(ids)).map((h) => (h ? fromHash(h) : null));
  }

  async page(limit: number, before: number | null): Promise<PredictionPage> {
    const results: PredictionRecord[] = [];
    let max = before === null ? "+inf" : `(${before}`;
    // Entries whose hash expired (--job-ttl) are dropped from the index as they are met.
    for (;;) {
      const raw = await this.#r.zrevrangebyscore(this.#index, max, "-inf", "WITHSCORES", "LIMIT", 0, limit + 1 - results.length);
      if (!raw.length) return { results, nextBefore: null };
      const ids = raw.filter((_, i) => i % 2 === 0);
      const recs = await this.#many(ids);
      const gone = ids.filter((_, i) => recs[i] === null);
      if (gone.length) await this.#r.zrem(this.#index, ...gone);
      for (const r of recs) if (r) results.push(r);
      if (results.length > limit) {
        results.length = limit;
        return { results, nextBefore: results[limit - 1]!.seq };
      }
      max = `(${raw[raw.length - 1]}`;
    }
  }

  /** The queued predictions this replica owns (it created or adopted them), oldest first. */
  async queued(): Promise<PredictionRecord[]> {
    const hashes = await this.#hashes(await this.#r.smembers(this.#pending));
    return hashes
      .filter((h): h is Hash => h !== null && h.status === "starting" && h.owner === this.replicaId)
      .map(fromHash)
      .sort((a, b) => a.seq - b.seq);
  }

  pendingCount(): Promise<number> {
    return this.#r.scard(this.#pending);
  }

  async start(id: string, at: number): Promise<boolean> {
    return (await this.#r.eval(START, 1, this.#rec(id), String(at))) === 1;
  }

  async requeue(id: string, logLine: string): Promise<void> {
    await this.#r.eval(REQUEUE, 1, this.#rec(id), logLine);
  }

  /**
   * Adopts the pending predictions of replicas whose lease ran out (they died): they become this replica's,
   * and a running one goes back to the queue with `logLine` in its logs (run again with the same request id,
   * it attaches to its queue job when that still exists). Returns those that were running.
   */
  async requeueInterrupted(logLine: string): Promise<PredictionRecord[]> {
    const others = (await this.#hashes(await this.#r.smembers(this.#pending))).filter((h): h is Hash => h !== null && !!h.owner && h.owner !== this.replicaId);
    const owners = [...new Set(others.map((h) => h.owner!))];
    if (!owners.length) return [];
    const leases = await this.#r.mget(...owners.map((o) => `${this.#p}replica:${o}`));
    const dead = new Set(owners.filter((_, i) => leases[i] === null));
    const requeued: string[] = [];
    // The script checks again: a lease renewed meanwhile, or another replica adopting first, leaves it be.
    for (const h of others.filter((x) => dead.has(x.owner!))) {
      const r = await this.#r.eval(ADOPT, 2, this.#rec(h.id!), `${this.#p}replica:${h.owner}`, h.owner!, this.replicaId, logLine);
      if (r === 2) requeued.push(h.id!);
    }
    return (await this.#many(requeued)).filter((r): r is PredictionRecord => r !== null);
  }

  async appendLog(id: string, text: string): Promise<void> {
    await this.#r.eval(APPEND_LOG, 1, this.#rec(id), text);
  }

  async finish(id: string, status: PredictionStatus, at: number, fields: { output?: string[] | null; error?: string | null; log?: string; onlyIfQueued?: boolean }): Promise<boolean> {
    const args = [status, String(at), fields.output ? JSON.stringify(fields.output) : "", fields.error ?? "", fields.log ?? "", fields.onlyIfQueued ? "1" : "0", String(this.#ttlMs), id];
    return (await this.#r.eval(FINISH, 3, this.#rec(id), this.#pending, this.#done, ...args)) === 1;
  }

  async requestCancel(id: string): Promise<void> {
    await this.#r.publish(`${this.#p}cancel`, id);
  }

  onCancelRequest(fn: (id: string) => void): void {
    this.#onCancel = fn;
  }

  /**
   * Deletes what completed at or before `cutoff` (on the server's clock; Redis's TTLs do the same on its own
   * clock, whichever comes first), with its images; returns the ids.
   */
  async deleteCompletedBefore(cutoff: number): Promise<string[]> {
    const ids = await this.#r.zrangebyscore(this.#done, "-inf", cutoff);
    if (!ids.length) return [];
    for (const id of ids) await this.files.remove(id);
    await this.#r
      .multi()
      .del(...ids.map((id) => this.#rec(id)))
      .zrem(this.#index, ...ids)
      .zrem(this.#done, ...ids)
      .exec();
    return ids;
  }

  /** Ends the lease and closes both connections (idempotent). */
  async close(): Promise<void> {
    clearInterval(this.#lease);
    // Its pending predictions are taken over by another replica without waiting for the lease to run out.
    if (this.#r.status === "ready") await this.#r.del(`${this.#p}replica:${this.replicaId}`).catch(() => undefined);
    for (const c of [this.#sub, this.#r]) {
      if (c.status === "ready") await settleWithin(c.quit().catch(() => undefined), 1_000, { unref: true });
      c.disconnect();
    }
  }
}
