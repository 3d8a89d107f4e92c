import { mkdirSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import type { WebhookEvent } from "./webhook-types.js";
import { DataDirLock } from "./data-dir-lock.js";
import { DiskFiles, MemoryFiles, type PredictionFiles } from "./prediction-files.js";
import type { PredictionRecord, PredictionStatus } from "./prediction-record.js";
import type { NewPrediction, PredictionPage, PredictionStoreApi } from "./prediction-store-api.js";

const SCHEMA = `
CREATE TABLE IF NOT EXISTS predictions (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  token TEXT NOT NULL,
  model TEXT NOT NULL,
  version TEXT NOT NULL,
  input TEXT NOT NULL,
  status TEXT NOT NULL,
  output TEXT,
  error TEXT,
  logs TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL,
  started_at INTEGER,
  completed_at INTEGER,
  deadline INTEGER,
  webhook TEXT,
  webhook_events_filter TEXT,
  runs INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS predictions_by_status ON predictions (status, seq);
CREATE INDEX IF NOT EXISTS predictions_by_completion ON predictions (completed_at);
`;

interface Row {
  seq: number;
  id: string;
  token: string;
  model: string;
  version: string;
  input: string;
  status: PredictionStatus;
  output: string | null;
  error: string | null;
  logs: string;
  created_at: number;
  started_at: number | null;
  completed_at: number | null;
  deadline: number | null;
  webhook: string | null;
  webhook_events_filter: string | null;
  runs: number;
}

function fromRow(r: Row): PredictionRecord {
  return {
    seq: r.seq,
    id: r.id,
    token: r.token,
    model: r.model,
    version: r.version,
    input: JSON.parse(r.input) as Record<string, unknown>,
    status: r.status,
    output: r.output === null ? null : (JSON.parse(r.output) as string[]),
    error: r.error,
    logs: r.logs,
    createdAt: r.created_at,
    startedAt: r.started_at,
    completedAt: r.completed_at,
    deadline: r.deadline,
    webhook: r.webhook,
    webhookEventsFilter: r.webhook_events_filter === null ? null : (JSON.parse(r.webhook_events_filter) as WebhookEvent[]),
    runs: r.runs,
  };
}

export type { NewPrediction, PredictionPage };

/**
 * The durable store of predictions: SQLite (better-sqlite3, WAL) in `<dataDir>/predictions.db`, output PNGs
 * in `<dataDir>/files/`, and a lock so one serve owns the dir; or all in memory when there is no data dir.
 * Every write is one synchronous statement: once a call returns, a SIGKILL cannot undo it (WAL with
 * `synchronous = NORMAL` loses nothing on a process crash, only on a power cut).
 */
export class PredictionStore implements PredictionStoreApi {
  readonly files: PredictionFiles;
  readonly #db: Database.Database;
  readonly #lock: DataDirLock | null;
  readonly #stmts;

  private constructor(db: Database.Database, files: PredictionFiles, lock: DataDirLock | null) {
    this.#db = db;
    this.files = files;
    this.#lock = lock;
    db.exec(SCHEMA);
    this.#stmts = {
      insert: db.prepare(
        `INSERT INTO predictions (id, token, model, version, input, status, created_at, deadline, webhook, webhook_events_filter)
         VALUES (@id, @token, @model, @version, @input, 'starting', @createdAt, @deadline, @webhook, @filter)`,
      ),
      get: db.prepare<[string], Row>("SELECT * FROM predictions WHERE id = ?"),
      page: db.prepare<[number, number], Row>("SELECT * FROM predictions WHERE seq < ? ORDER BY seq DESC LIMIT ?"),
      queued: db.prepare<[], Row>("SELECT * FROM predictions WHERE status = 'starting' ORDER BY seq"),
      countPending: db.prepare<[], { n: number }>("SELECT COUNT(*) AS n FROM predictions WHERE status IN ('starting', 'processing')"),
      start: db.prepare("UPDATE predictions SET status = 'processing', started_at = ?, runs = runs + 1 WHERE id = ? AND status = 'starting'"),
      requeue: db.prepare("UPDATE predictions SET status = 'starting', started_at = NULL, logs = logs || ? WHERE id = ? AND status = 'processing'"),
      requeueAll: db.prepare<[string], Row>("UPDATE predictions SET status = 'starting', started_at = NULL, logs = logs || ? WHERE status = 'processing' RETURNING *"),
      log: db.prepare("UPDATE predictions SET logs = logs || ? WHERE id = ?"),
      finish: db.prepare(
        "UPDATE predictions SET status = @status, output = @output, error = @error, completed_at = @at, logs = logs || @log WHERE id = @id AND status IN ('starting', 'processing')",
      ),
      expired: db.prepare<[number], { id: string }>("SELECT id FROM predictions WHERE completed_at IS NOT NULL AND completed_at <= ?"),
      remove: db.prepare("DELETE FROM predictions WHERE id = ?"),
    };
  }

  /**
   * Opens the store of `dataDir` (created if missing; locked against a second serve: a ConfigError naming
   * `--data-dir` when a live one holds it), or an in-memory one when `dataDir` is null.
   */
  static open(dataDir: string | null): PredictionStore {
    if (dataDir === null) {
      const db = new Database(":memory:");
      return new PredictionStore(db, new MemoryFiles(), null);
    }
    const lock = DataDirLock.acquire(dataDir);
    try {
      mkdirSync(dataDir, { recursive: true });
      const db = new Database(join(dataDir, "predictions.db"));
      db.pragma("journal_mode = WAL");
      db.pragma("synchronous = NORMAL");
      db.pragma("busy_timeout = 5000");
      return new PredictionStore(db, new DiskFiles(join(dataDir, "files")), lock);
    } catch (err) {
      lock.release();
      throw err;
    }
  }

  insert(p: NewPrediction): PredictionRecord {
    this.#stmts.insert.run({ ...p, input: JSON.stringify(p.input), filter: p.webhookEventsFilter === null ? null : JSON.stringify(p.webhookEventsFilter) });
    return this.get(p.id)!;
  }

  get(id: string): PredictionRecord | null {
    const r = this.#stmts.get.get(id);
    return r ? fromRow(r) : null;
  }

  /** Newest first, `limit` per page, starting below `before` (a `seq`; absent: the newest). */
  page(limit: number, before: number | null): PredictionPage {
    const rows = this.#stmts.page.all(before ?? Number.MAX_SAFE_INTEGER, limit + 1);
    const results = rows.slice(0, limit).map(fromRow);
    return { results, nextBefore: rows.length > limit ? results[results.length - 1]!.seq : null };
  }

  /** The queued predictions, oldest first. */
  queued(): PredictionRecord[] {
    return this.#stmts.queued.all().map(fromRow);
  }

  /** Queued and running predictions. */
  pendingCount(): number {
    return this.#stmts.countPending.get()!.n;
  }

  /** starting → processing; false when it is no longer queued (canceled meanwhile). */
  start(id: string, at: number): boolean {
    return this.#stmts.start.run(at, id).changes === 1;
  }

  /** processing → starting, with a line in its logs saying why (a shutdown stopped it). */
  requeue(id: string, logLine: string): void {
    this.#stmts.requeue.run(logLine, id);
  }

  /** Every prediction a crash left `processing` goes back to the queue, with `logLine` in its logs; returns them. */
  requeueInterrupted(logLine: string): PredictionRecord[] {
    return this.#stmts.requeueAll.all(logLine).map(fromRow);
  }

  appendLog(id: string, text: string): void {
    this.#stmts.log.run(text, id);
  }

  /**
   * Moves a pending prediction to its final status; false when it was final already (exactly once). One
   * process runs everything here, so `onlyIfQueued` needs no check: a run it does not hold is queued.
   */
  finish(id: string, status: PredictionStatus, at: number, fields: { output?: string[] | null; error?: string | null; log?: string; onlyIfQueued?: boolean }): boolean {
    const r = this.#stmts.finish.run({ id, status, at, output: fields.output ? JSON.stringify(fields.output) : null, error: fields.error ?? null, log: fields.log ?? "" });
    return r.changes === 1;
  }

  /** Deletes the predictions (and their files) that completed at or before `cutoff`; returns how many. */
  deleteCompletedBefore(cutoff: number): string[] {
    const ids = this.#stmts.expired.all(cutoff).map((r) => r.id);
    const del = this.#db.transaction((list: string[]) => {
      for (const id of list) this.#stmts.remove.run(id);
    });
    del(ids);
    for (const id of ids) this.files.remove(id);
    return ids;
  }

  /** Closes the database and releases the data dir (idempotent). */
  close(): void {
    if (this.#db.open) this.#db.close();
    this.#lock?.release();
  }
}
