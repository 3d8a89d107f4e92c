import type { PredictionEvent } from "./prediction-events.js";
import type { PredictionRecord, PredictionStatus } from "./prediction-record.js";

/** A value, or a promise of it: the SQLite store answers at once, the Redis one over the network. */
export type Awaitable<T> = T | Promise<T>;

/** What a new prediction is created with. */
export type NewPrediction = Pick<PredictionRecord, "id" | "token" | "model" | "version" | "input" | "createdAt" | "deadline" | "webhook" | "webhookEventsFilter">;

/** One page of a list, newest first, and the `seq` below which the next page starts (null: the last page). */
export interface PredictionPage {
  results: PredictionRecord[];
  nextBefore: number | null;
}

/** The output PNGs of predictions, by prediction id and file name. */
export interface PredictionFilesApi {
  write(id: string, name: string, png: Buffer): Awaitable<void>;
  /** The file, or null when it is gone. */
  read(id: string, name: string): Awaitable<Buffer | null>;
  /** Removes every file of a prediction (idempotent). */
  remove(id: string): Awaitable<void>;
}

/** Where a prediction's stream events travel: in this process, or across a fleet of replicas (Redis pub/sub). */
export interface PredictionEventBus {
  subscribe(id: string, fn: (e: PredictionEvent) => void): () => void;
  emit(id: string, e: PredictionEvent): void;
  /** Open streams of `id` (a run makes previews only for a stream that is open). */
  count(id: string): number;
  /** The last preview of a prediction that ended before any stream heard it, once (then forgotten). */
  takeFinalPreview(id: string): PredictionEvent | undefined;
}

/**
 * What the runner and the routes need of a prediction store. Two implementations: {@link PredictionStore}
 * (SQLite in `--data-dir`, one serve) and `RedisPredictionStore` (the `queue` executor's Redis, a fleet of
 * serve replicas sharing one history). Transitions are conditional (exactly once) in both.
 */
export interface PredictionStoreApi {
  readonly files: PredictionFilesApi;
  /**
   * How often the runner looks for predictions to take over (`requeueInterrupted`, then `queued`) besides at
   * start: on a store shared by servers, those another server left when it died. Absent: only at start.
   */
  readonly adoptEveryMs?: number;
  /** The store's own event bus when events must cross processes; absent: the runner's in-process one. */
  readonly events?: PredictionEventBus;
  insert(p: NewPrediction): Awaitable<PredictionRecord>;
  get(id: string): Awaitable<PredictionRecord | null>;
  /** Newest first, `limit` per page, starting below `before` (a `seq`; absent: the newest). */
  page(limit: number, before: number | null): Awaitable<PredictionPage>;
  /** The queued predictions this server should run, oldest first. */
  queued(): Awaitable<PredictionRecord[]>;
  /** Queued and running predictions. */
  pendingCount(): Awaitable<number>;
  /** starting → processing; false when it is no longer queued (canceled meanwhile). */
  start(id: string, at: number): Awaitable<boolean>;
  /** processing → starting, with a line in its logs saying why. */
  requeue(id: string, logLine: string): Awaitable<void>;
  /** Predictions a crash left `processing` go back to the queue, with `logLine` in their logs; returns them. */
  requeueInterrupted(logLine: string): Awaitable<PredictionRecord[]>;
  appendLog(id: string, text: string): Awaitable<void>;
  /**
   * Moves a pending prediction to its final status; false when it was final already (exactly once). With
   * `onlyIfQueued`, only a prediction still `starting` moves (a cancel that must not end another server's run).
   */
  finish(id: string, status: PredictionStatus, at: number, fields: { output?: string[] | null; error?: string | null; log?: string; onlyIfQueued?: boolean }): Awaitable<boolean>;
  /**
   * Asks the server running `id` to cancel it (it stops at its next step); absent: every run is in this
   * process. Resolves once the request is sent.
   */
  requestCancel?(id: string): Awaitable<void>;
  /** Registers who acts on {@link requestCancel}s that reach this server (the runner). */
  onCancelRequest?(fn: (id: string) => void): void;
  /** Deletes the predictions (and their files) that completed at or before `cutoff`; returns their ids. */
  deleteCompletedBefore(cutoff: number): Awaitable<string[]>;
  close(): Awaitable<void>;
}
