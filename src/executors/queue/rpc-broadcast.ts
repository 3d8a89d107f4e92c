import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import { TimeoutError, TransportError, ValidationError, deserializeError, type OmniError } from "../../errors/omni-error.js";
import { queueKeys, subscribeWhenReady, type RpcMessage, type RpcReply } from "../../protocol/queue-protocol.js";
import { Deadline } from "../../policies/deadline.js";
import { orTimeout } from "../../utils/settle-within.js";

/** How long a call waits for a missing reply before it is sent again, ms (doubling up to 8× this). */
export const DEFAULT_RPC_RESEND_MS = 1_000;

/** One rank's reply as `collectiveRpc` returns it: the worker's reply with the worker it came from. */
export type RankReply = Record<string, unknown> & { rank: number; worker: string; workerRank: number };

/**
 * `collectiveRpc` over Redis pub/sub: the call goes to every worker subscribed to the queue's RPC channel,
 * and the caller waits, within one deadline, for a reply from each worker that was live when the call was
 * made. Ranks are numbered across the fleet in worker-id order: rank k is the k-th (worker, local rank) pair.
 */
export class RpcBroadcast {
  readonly #pub: Redis;
  readonly #sub: Redis;
  readonly #keys: ReturnType<typeof queueKeys>;
  readonly #resendMs: number;
  /** Calls in flight, by id: how a reply reaches its call, and how `dispose` ends it. */
  #calls = new Map<string, { onReply: (r: RpcReply) => void; fail: (err: OmniError) => void }>();
  #ready: Promise<unknown> | null = null;

  /** `resendMs`: how long a call waits for a missing reply before sending itself again (doubling, up to 8×). */
  constructor(pub: Redis, sub: Redis, queue: string, opts: { resendMs?: number } = {}) {
    this.#pub = pub;
    this.#sub = sub;
    this.#keys = queueKeys(queue);
    this.#resendMs = opts.resendMs ?? DEFAULT_RPC_RESEND_MS;
    // Subscribed now so replies are heard from the first call; a failure (Redis refusing the credentials) is
    // met again, and the subscription retried, by that call, never left as an unhandled rejection.
    void this.#subscribed().catch(() => undefined);
    sub.on("message", (channel: string, text: string) => {
      if (channel !== this.#keys.rpcReply) return;
      let reply: RpcReply;
      try {
        reply = JSON.parse(text) as RpcReply;
      } catch {
        return; // Not ours to parse: someone else published on the channel.
      }
      this.#calls.get(reply.id)?.onReply(reply);
    });
  }

  #subscribed(): Promise<unknown> {
    this.#ready ??= subscribeWhenReady(this.#sub, this.#keys.rpcReply).catch((err: unknown) => {
      this.#ready = null;
      throw err;
    });
    return this.#ready;
  }

  /** Calls `method` on every live worker; every rank's reply in rank order, or only `uniqueReplyRank`'s. */
  async call(method: string, workers: string[], o: { args: unknown[]; kwargs: Record<string, unknown>; timeoutMs: number; uniqueReplyRank?: number; signal?: AbortSignal }): Promise<unknown> {
    if (!workers.length) throw new TransportError(`collectiveRpc("${method}"): no live worker on queue ${this.#keys.rpc}`, { data: { method } });
    const id = randomUUID();
    const replies = new Map<string, RpcReply>();
    let sends = 0;
    // One deadline for the call: its timer names the workers that did not reply; a caller's abort ends it too.
    const dl = new Deadline(o.timeoutMs, o.signal, () => {
      const missing = workers.filter((w) => !replies.has(w));
      return new TimeoutError(
        `collectiveRpc("${method}") timed out after ${o.timeoutMs}ms waiting for worker(s) ${missing.join(", ")} (the call was sent ${sends} time(s); a worker with a live heartbeat that never answers has lost its subscription to ${this.#keys.rpc})`,
        { data: { method, timeoutMs: o.timeoutMs, missing } },
      );
    });
    let resend: NodeJS.Timeout | undefined;
    const done = new Promise<void>((resolve, reject) => {
      this.#calls.set(id, {
        onReply: (r) => {
          if (!workers.includes(r.worker)) return; // A worker that joined after the call: not waited for, not counted.
          replies.set(r.worker, r);
          if (replies.size === workers.length) resolve();
        },
        fail: reject,
      });
    });
    const send = (only?: string[]) => {
      sends++;
      const msg: RpcMessage = { id, method, args: o.args, kwargs: o.kwargs, timeoutMs: Math.max(1, dl.remaining()), ...(only ? { only } : {}) };
      return this.#pub.publish(this.#keys.rpc, JSON.stringify(msg));
    };
    // Pub/sub delivers at most once (a subscriber reconnecting misses what is published meanwhile), so a call
    // still missing replies is sent again to the workers that have not answered, under the same id: a worker
    // that already ran it answers again from its record of the reply (server/queue/rpc-answers.ts).
    const scheduleResend = (waitMs: number) => {
      resend = setTimeout(() => {
        const missing = workers.filter((w) => !replies.has(w));
        if (!missing.length) return;
        send(missing).catch(() => undefined); // the deadline, not a failed resend, ends the call
        scheduleResend(Math.min(waitMs * 2, this.#resendMs * 8));
      }, waitMs);
    };
    try {
      // The subscription (a reconnecting connection) and the publish wait inside the deadline too: on a stalled
      // Redis connection they would otherwise hang the call.
      await dl.race(this.#subscribed());
      await dl.race(send());
      scheduleResend(this.#resendMs);
      await dl.race(done);
    } catch (err) {
      if (dl.callerAborted) throw o.signal!.reason;
      if (err instanceof TimeoutError) throw await this.#withSubscriberCounts(err);
      throw err;
    } finally {
      clearTimeout(resend);
      dl.dispose();
      this.#calls.delete(id);
    }
    const errors: OmniError[] = [];
    const flat: unknown[] = [];
    for (const w of [...workers].sort()) {
      const r = replies.get(w)!;
      if (r.error) {
        errors.push(deserializeError(r.error, { worker: w }));
        continue;
      }
      // Ranked replies (ping, stats: objects with a `rank`) are renumbered across the fleet and name their
      // worker; any other reply (a model description, a plain value) is passed on as the worker sent it.
      for (const [workerRank, v] of (r.replies ?? []).entries()) {
        const ranked = typeof v === "object" && v !== null && typeof (v as { rank?: unknown }).rank === "number";
        flat.push(ranked ? { ...(v as Record<string, unknown>), rank: flat.length, worker: w, workerRank } : v);
      }
    }
    if (errors.length) throw errors[0]!;
    if (o.uniqueReplyRank === undefined) return flat;
    const only = flat[o.uniqueReplyRank];
    if (!only) {
      throw new ValidationError(`uniqueReplyRank ${o.uniqueReplyRank} is not a rank (the fleet has ${flat.length})`, { field: "uniqueReplyRank" });
    }
    return only;
  }

  /**
   * A timed-out call's error, with how many connections Redis counts on the call and reply channels: 0 on the
   * reply channel means this executor stopped hearing replies; fewer on the call channel than live workers
   * means a worker stopped hearing calls. Best effort, bounded: the count is a hint, the timeout the error.
   */
  async #withSubscriberCounts(err: TimeoutError): Promise<TimeoutError> {
    try {
      const counts = (await orTimeout(this.#pub.pubsub("NUMSUB", this.#keys.rpc, this.#keys.rpcReply), 1_000, () => new TimeoutError("NUMSUB"))) as unknown[];
      const note = ` (Redis counts ${String(counts[1])} subscriber(s) on ${this.#keys.rpc} and ${String(counts[3])} on ${this.#keys.rpcReply})`;
      return new TimeoutError(err.message + note, { data: err.data, cause: err });
    } catch {
      return err;
    }
  }

  /** Fails every call in flight with `reason` (the executor is closing): none waits out its deadline. */
  dispose(reason: OmniError): void {
    for (const call of this.#calls.values()) call.fail(reason);
    this.#calls.clear();
  }
}
