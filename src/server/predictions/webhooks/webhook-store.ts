/**
 * The deliveries' durable state: tables of our own in the SQLite database the server hands us. A delivery is
 * written before `notify` returns and updated after each attempt, so a restart resumes the pending ones with
 * the same `webhook-id`.
 */
import type { Database, Statement } from "better-sqlite3";
import type { WebhookDeliveryState, WebhookEvent } from "../webhook-types.js";

/** One delivery as stored. Times are ms since the epoch (of the dispatcher's clock). */
export interface DeliveryRow {
  seq: number;
  webhookId: string;
  predictionId: string;
  event: WebhookEvent;
  url: string;
  /** The URL's scheme, host and port: the unit of the per-receiver concurrency limit. */
  origin: string;
  body: string;
  status: WebhookDeliveryState["status"];
  attempts: number;
  lastStatusCode: number | null;
  lastError: string | null;
  /** When the next attempt is due; null once delivered or failed. */
  dueAt: number | null;
  /** When it was first due: the start of its throttle window. */
  firstDueAt: number;
  firstAttemptAt: number | null;
}

/** What an attempt changed. */
export type AttemptUpdate = Pick<DeliveryRow, "status" | "attempts" | "lastStatusCode" | "lastError" | "dueAt" | "firstAttemptAt">;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS webhook_deliveries (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  webhook_id TEXT NOT NULL UNIQUE,
  prediction_id TEXT NOT NULL,
  event TEXT NOT NULL,
  url TEXT NOT NULL,
  origin TEXT NOT NULL,
  body TEXT NOT NULL,
  status TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  last_status_code INTEGER,
  last_error TEXT,
  due_at INTEGER,
  first_due_at INTEGER NOT NULL,
  first_attempt_at INTEGER
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_prediction ON webhook_deliveries (prediction_id, seq);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (status, due_at);
CREATE TABLE IF NOT EXISTS webhook_settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
`;

const COLUMNS = `seq, webhook_id AS webhookId, prediction_id AS predictionId, event, url, origin, body, status, attempts,
  last_status_code AS lastStatusCode, last_error AS lastError, due_at AS dueAt, first_due_at AS firstDueAt,
  first_attempt_at AS firstAttemptAt`;

/** Prepared statements over the two tables. */
export class WebhookStore {
  readonly #insert: Statement;
  readonly #latestThrottled: Statement<[string]>;
  readonly #coalesce: Statement;
  readonly #delete: Statement<[string]>;
  readonly #due: Statement<[number, string, string, number]>;
  readonly #nextDue: Statement<[number]>;
  readonly #record: Statement;
  readonly #list: Statement<[string]>;
  readonly #forget: Statement<[string]>;
  readonly #getSetting: Statement<[string]>;
  readonly #setSetting: Statement<[string, string]>;

  constructor(db: Database) {
    db.exec(SCHEMA);
    this.#insert = db.prepare(`INSERT INTO webhook_deliveries (webhook_id, prediction_id, event, url, origin, body, status, due_at, first_due_at)
      VALUES (@webhookId, @predictionId, @event, @url, @origin, @body, 'pending', @dueAt, @dueAt)`);
    this.#latestThrottled = db.prepare(`SELECT ${COLUMNS} FROM webhook_deliveries
      WHERE prediction_id = ? AND event IN ('output', 'logs') ORDER BY seq DESC LIMIT 1`);
    this.#coalesce = db.prepare(`UPDATE webhook_deliveries SET event = @event, body = @body, url = @url, origin = @origin WHERE webhook_id = @webhookId`);
    this.#delete = db.prepare(`DELETE FROM webhook_deliveries WHERE webhook_id = ?`);
    // The origins at their limit and the predictions with an attempt in flight are left out in SQL, so a
    // backlog for one silent receiver costs a scan in C, not a row each in JavaScript, on every pump.
    this.#due = db.prepare(`SELECT ${COLUMNS} FROM webhook_deliveries WHERE status = 'pending' AND due_at <= ?
      AND origin NOT IN (SELECT value FROM json_each(?)) AND prediction_id NOT IN (SELECT value FROM json_each(?))
      ORDER BY due_at, seq LIMIT ?`);
    this.#nextDue = db.prepare(`SELECT MIN(due_at) AS at FROM webhook_deliveries WHERE status = 'pending' AND due_at > ?`);
    this.#record = db.prepare(`UPDATE webhook_deliveries SET status = @status, attempts = @attempts, last_status_code = @lastStatusCode,
      last_error = @lastError, due_at = @dueAt, first_attempt_at = @firstAttemptAt WHERE webhook_id = @webhookId`);
    this.#list = db.prepare(`SELECT ${COLUMNS} FROM webhook_deliveries WHERE prediction_id = ? ORDER BY seq`);
    this.#forget = db.prepare(`DELETE FROM webhook_deliveries WHERE prediction_id = ?`);
    this.#getSetting = db.prepare(`SELECT value FROM webhook_settings WHERE key = ?`);
    this.#setSetting = db.prepare(`INSERT INTO webhook_settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`);
  }

  insert(d: { webhookId: string; predictionId: string; event: WebhookEvent; url: string; origin: string; body: string; dueAt: number }): void {
    this.#insert.run(d);
  }

  /** The newest `output`/`logs` delivery of a prediction: the one a new such event may coalesce into. */
  latestThrottled(predictionId: string): DeliveryRow | undefined {
    return this.#latestThrottled.get(predictionId) as DeliveryRow | undefined;
  }

  /** Replaces the payload of a delivery not attempted yet (throttling keeps only the latest body). */
  coalesce(webhookId: string, event: WebhookEvent, url: string, origin: string, body: string): void {
    this.#coalesce.run({ webhookId, event, url, origin, body });
  }

  delete(webhookId: string): void {
    this.#delete.run(webhookId);
  }

  /** Up to `limit` pending deliveries due at `now`, oldest due first, none to `skipOrigins` nor of `skipPredictions`. */
  due(now: number, skipOrigins: readonly string[], skipPredictions: readonly string[], limit: number): DeliveryRow[] {
    return this.#due.all(now, JSON.stringify(skipOrigins), JSON.stringify(skipPredictions), limit) as DeliveryRow[];
  }

  /** The earliest due time after `now` of a pending delivery, or null. */
  nextDue(now: number): number | null {
    return (this.#nextDue.get(now) as { at: number | null }).at;
  }

  record(webhookId: string, u: AttemptUpdate): void {
    this.#record.run({ webhookId, ...u });
  }

  list(predictionId: string): DeliveryRow[] {
    return this.#list.all(predictionId) as DeliveryRow[];
  }

  /** Deletes a prediction's deliveries (retention). */
  forget(predictionId: string): void {
    this.#forget.run(predictionId);
  }

  setting(key: string): string | undefined {
    return (this.#getSetting.get(key) as { value: string } | undefined)?.value;
  }

  setSetting(key: string, value: string): void {
    this.#setSetting.run(key, value);
  }
}
