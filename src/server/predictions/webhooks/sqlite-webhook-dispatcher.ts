/**
 * The webhook dispatcher of the predictions API: durable deliveries in SQLite, signed per Standard Webhooks,
 * retried with backoff for at least an hour, throttled per prediction, and sent with bounded concurrency per
 * receiver (origin) so one receiver that never answers holds a few slots, not the queue.
 */
import { randomBytes } from "node:crypto";
import BetterSqlite3, { type Database } from "better-sqlite3";
import pino, { type BaseLogger } from "pino";
import type { ValidationError } from "../../../errors/omni-error.js";
import { systemClock, type Clock, type ClockTimer } from "../../../utils/clock.js";
import type { WebhookDeliveryState, WebhookDispatcher, WebhookEvent, WebhookTarget } from "../webhook-types.js";
import { sendAttempt, type AttemptResult } from "./webhook-attempt.js";
import { DEFAULT_BACKOFF, nextDelay, type BackoffOptions } from "./webhook-backoff.js";
import { generateWebhookSecret, parseWebhookSecret } from "./webhook-secret.js";
import { WebhookSigner } from "./webhook-signer.js";
import { WebhookStore, type DeliveryRow } from "./webhook-store.js";
import { checkWebhookUrl, systemLookup, type CheckedUrl, type WebhookLookup } from "./webhook-url-guard.js";

/** Options of {@link SqliteWebhookDispatcher}. */
export interface WebhookDispatcherOptions {
  /**
   * The server's database: the dispatcher keeps its tables there (`webhook_deliveries`, `webhook_settings`).
   * A path instead opens that file, which `close()` then closes (`":memory:"`: nothing survives a restart).
   */
  db: Database | string;
  /** A `whsec_` secret (`--webhook-secret`); absent: the one kept in `db`, or a new one kept there and logged once. */
  secret?: string;
  /** Let webhooks reach loopback, private and link-local addresses (`--allow-private-webhooks`). */
  allowPrivate?: boolean;
  /** Each attempt is logged here (the server's fastify logger fits). */
  logger?: WebhookLogger;
  /** Backoff, throttle and attempt deadlines run on it. */
  clock?: Clock;
  /** Resolves receivers' host names (tests inject one). */
  lookup?: WebhookLookup;
  /** Per attempt; default 10 s. */
  attemptTimeoutMs?: number;
  /** Default 1 s doubling to 10 min, +0-25% jitter, for 1 h. */
  backoff?: Partial<BackoffOptions>;
  /** `output`/`logs` at most one per this per prediction; default 500 ms. */
  throttleMs?: number;
  /** Attempts in flight to one origin (scheme, host, port); default 4. */
  maxPerOrigin?: number;
  /** Attempts in flight in all; default 64. */
  maxInFlight?: number;
}

/** What the dispatcher logs with: pino's level methods (fastify's `app.log` and a pino logger both fit). */
export type WebhookLogger = Pick<BaseLogger, "info" | "warn" | "error">;

const THROTTLED = new Set<WebhookEvent>(["output", "logs"]);

/** {@link WebhookDispatcher} over SQLite. `close()` leaves pending deliveries for the next one on the same database. */
export class SqliteWebhookDispatcher implements WebhookDispatcher {
  readonly secret: string;
  readonly #store: WebhookStore;
  /** The database this dispatcher opened itself (from a path), closed with it. */
  readonly #ownDb: Database | null;
  readonly #signer: WebhookSigner;
  readonly #log: WebhookLogger;
  readonly #clock: Clock;
  readonly #lookup: WebhookLookup;
  readonly #allowPrivate: boolean;
  readonly #timeoutMs: number;
  readonly #backoff: BackoffOptions;
  readonly #throttleMs: number;
  readonly #maxPerOrigin: number;
  readonly #maxInFlight: number;
  /** webhookId → the attempt's abort controller. */
  readonly #inFlight = new Map<string, AbortController>();
  readonly #attempts = new Set<Promise<void>>();
  readonly #perOrigin = new Map<string, number>();
  /** Predictions with an attempt in flight: one at a time each, so a healthy receiver sees `start` before `completed`. */
  readonly #busy = new Set<string>();
  #timer: ClockTimer | null = null;
  #pumpQueued = false;
  #closed = false;

  constructor(o: WebhookDispatcherOptions) {
    const given = o.secret !== undefined ? parseWebhookSecret(o.secret) : undefined; // before opening anything
    this.#ownDb = typeof o.db === "string" ? new BetterSqlite3(o.db) : null;
    this.#ownDb?.pragma("journal_mode = WAL"); // a database of our own: WAL makes each queued delivery a cheap append
    this.#store = new WebhookStore(this.#ownDb ?? (o.db as Database));
    this.#log = o.logger ?? pino({ level: "silent" });
    this.#clock = o.clock ?? systemClock;
    this.#lookup = o.lookup ?? systemLookup;
    this.#allowPrivate = o.allowPrivate ?? false;
    this.#timeoutMs = o.attemptTimeoutMs ?? 10_000;
    this.#backoff = { ...DEFAULT_BACKOFF, random: Math.random, ...o.backoff };
    this.#throttleMs = o.throttleMs ?? 500;
    this.#maxPerOrigin = o.maxPerOrigin ?? 4;
    this.#maxInFlight = o.maxInFlight ?? 64;
    this.secret = given ?? this.#storedSecret();
    this.#signer = new WebhookSigner(this.secret);
    this.#pump(); // resume what the last run left pending
  }

  notify(predictionId: string, event: WebhookEvent, body: Record<string, unknown>, target: WebhookTarget): void {
    if (target.eventsFilter !== null && !target.eventsFilter.includes(event)) return;
    const json = JSON.stringify(body);
    const now = this.#clock.now();
    const last = this.#store.latestThrottled(predictionId);
    const unsent = last !== undefined && last.status === "pending" && last.attempts === 0 && !this.#inFlight.has(last.webhookId) ? last : undefined;
    let dueAt = now;
    if (THROTTLED.has(event)) {
      if (unsent) {
        // Still waiting for its window: it goes out with the latest body instead.
        this.#store.coalesce(unsent.webhookId, event, target.url, originOf(target.url), json);
        return;
      }
      if (last) dueAt = Math.max(now, last.firstDueAt + this.#throttleMs);
    } else if (event === "completed" && unsent) {
      this.#store.delete(unsent.webhookId); // the completed body is newer and carries the same output and logs
    }
    this.#store.insert({ webhookId: newWebhookId(), predictionId, event, url: target.url, origin: originOf(target.url), body: json, dueAt });
    this.#schedulePump();
  }

  deliveries(predictionId: string): WebhookDeliveryState[] {
    return this.#store.list(predictionId).map((r) => ({
      webhookId: r.webhookId,
      event: r.event,
      status: r.status,
      attempts: r.attempts,
      lastStatusCode: r.lastStatusCode,
      lastError: r.lastError,
      nextAttemptAt: r.status === "pending" && r.dueAt !== null ? new Date(r.dueAt).toISOString() : null,
    }));
  }

  async checkUrl(url: string): Promise<void> {
    await checkWebhookUrl(url, { allowPrivate: this.#allowPrivate, lookup: this.#lookup });
  }

  /** Deletes a prediction's deliveries (the jobs' retention calls it with the job). */
  forget(predictionId: string): void {
    this.#store.forget(predictionId);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#timer?.clear();
    for (const c of this.#inFlight.values()) c.abort();
    await Promise.all([...this.#attempts]);
    if (this.#ownDb?.open) this.#ownDb.close();
  }

  #storedSecret(): string {
    const kept = this.#store.setting("secret");
    if (kept !== undefined) return kept;
    const fresh = generateWebhookSecret();
    this.#store.setSetting("secret", fresh);
    this.#log.info({ webhookSecret: fresh }, "generated the webhook signing secret (kept in the data dir; GET /v1/webhooks/default/secret shows it again)");
    return fresh;
  }

  /** One pump for a burst of notifies (a prediction's events often come several in one tick). */
  #schedulePump(): void {
    if (this.#pumpQueued) return;
    this.#pumpQueued = true;
    queueMicrotask(() => this.#pump());
  }

  /** Starts every due delivery the limits allow, then arms the timer for the next one due. */
  #pump(): void {
    this.#pumpQueued = false;
    if (this.#closed) return;
    const now = this.#clock.now();
    for (;;) {
      const room = this.#maxInFlight - this.#inFlight.size;
      if (room <= 0) break;
      const saturated = [...this.#perOrigin].filter(([, n]) => n >= this.#maxPerOrigin).map(([o]) => o);
      const rows = this.#store.due(now, saturated, [...this.#busy], room);
      for (const row of rows) {
        // The batch may hold two rows of one prediction or more than an origin's room: re-check each.
        if (this.#busy.has(row.predictionId) || (this.#perOrigin.get(row.origin) ?? 0) >= this.#maxPerOrigin) continue;
        this.#start(row);
      }
      if (rows.length < room) break; // every due row was seen; else the exclusions changed: look again
    }
    this.#timer?.clear();
    const next = this.#store.nextDue(now);
    this.#timer = next === null ? null : this.#clock.timer(() => this.#pump(), next - now);
  }

  #start(row: DeliveryRow): void {
    const origin = row.origin;
    const controller = new AbortController();
    this.#inFlight.set(row.webhookId, controller);
    this.#perOrigin.set(origin, (this.#perOrigin.get(origin) ?? 0) + 1);
    this.#busy.add(row.predictionId);
    const done = this.#attempt(row, controller.signal)
      .catch((err: unknown) => this.#log.error({ err, webhookId: row.webhookId }, "webhook attempt failed unexpectedly"))
      .finally(() => {
        this.#inFlight.delete(row.webhookId);
        const left = (this.#perOrigin.get(origin) ?? 1) - 1;
        if (left > 0) this.#perOrigin.set(origin, left);
        else this.#perOrigin.delete(origin);
        this.#busy.delete(row.predictionId);
        this.#attempts.delete(done);
        this.#pump();
      });
    this.#attempts.add(done);
  }

  async #attempt(row: DeliveryRow, signal: AbortSignal): Promise<void> {
    const startedAt = this.#clock.now();
    let checked: CheckedUrl | null = null;
    let result: AttemptResult;
    let permanent = false;
    try {
      checked = await checkWebhookUrl(row.url, { allowPrivate: this.#allowPrivate, lookup: this.#lookup });
    } catch (err) {
      const e = err as ValidationError;
      permanent = e.data?.reason !== "dns"; // a refused address stays refused; a DNS failure may pass
      result = { ok: false, statusCode: null, error: e.message };
    }
    if (checked !== null) {
      const headers = this.#signer.headers(row.webhookId, this.#clock.now(), row.body);
      result = await sendAttempt({ url: checked.url, target: checked.target, headers: { ...headers }, body: row.body, timeoutMs: this.#timeoutMs, clock: this.#clock, signal });
    }
    const r = result!;
    if (this.#closed && r.error === "aborted") return; // stopped by close(): not counted, resumed by the next dispatcher
    const attempts = row.attempts + 1;
    const firstAttemptAt = row.firstAttemptAt ?? startedAt;
    const now = this.#clock.now();
    const delay = r.ok || permanent ? null : nextDelay(attempts, now - firstAttemptAt, this.#backoff);
    const status = r.ok ? "delivered" : delay === null ? "failed" : "pending";
    const dueAt = delay === null ? null : now + delay;
    this.#store.record(row.webhookId, { status, attempts, lastStatusCode: r.statusCode, lastError: r.error, dueAt, firstAttemptAt });
    const u = new URL(row.url);
    const fields = { webhookId: row.webhookId, predictionId: row.predictionId, event: row.event, url: `${u.origin}${u.pathname}`, attempt: attempts, statusCode: r.statusCode, error: r.error };
    if (status === "delivered") this.#log.info(fields, "webhook delivered");
    else if (status === "pending") this.#log.warn({ ...fields, nextAttemptAt: new Date(dueAt!).toISOString() }, "webhook attempt failed; will retry");
    else this.#log.warn(fields, permanent ? "webhook refused; not retried" : "webhook failed; retries exhausted");
  }
}

/** Standard Webhooks' `msg_` ids: 128 random bits. */
function newWebhookId(): string {
  return `msg_${randomBytes(16).toString("base64url")}`;
}

function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return url;
  }
}
