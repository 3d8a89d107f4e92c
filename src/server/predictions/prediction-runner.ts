import type { FastifyBaseLogger } from "fastify";
import { OmniDiffusionRequest } from "../../core/request.js";
import { AbortedError, ClosedError, QueueFullError, toOmniError } from "../../errors/omni-error.js";
import type { Clock, ClockTimer } from "../../utils/clock.js";
import { pngOf } from "../../utils/png.js";
import { previewInterval } from "../app/generation-flow.js";
import type { ServerContext } from "../app/server-context.js";
import { isPublicError } from "../shared/public-error.js";
import { PredictionEvents, progressLine, type PredictionEvent } from "./prediction-events.js";
import { planRequest, type PredictionInput } from "./prediction-input.js";
import { isFinal, type PredictionRecord, type PredictionStatus } from "./prediction-record.js";
import type { NewPrediction, PredictionEventBus, PredictionStoreApi } from "./prediction-store-api.js";
import type { WebhookDispatcher, WebhookEvent } from "./webhook-types.js";

/** Why a running prediction was stopped before it finished. */
type StopReason = "cancel" | "deadline" | "shutdown";

interface Running {
  controller: AbortController;
  stop: StopReason | null;
  done: Promise<void>;
  /** The engine request's id, once built: its place in the engine's queue is the prediction's queue position. */
  requestId?: string;
}

/** What a {@link PredictionRunner} works with. */
export interface PredictionRunnerOptions {
  ctx: ServerContext;
  store: PredictionStoreApi;
  clock: Clock;
  log: FastifyBaseLogger;
  /** Completed predictions older than this are deleted with their files. */
  ttlMs: number;
  webhooks: WebhookDispatcher | null;
  /** The prediction as clients see it (the webhook payload). */
  render: (rec: PredictionRecord) => Record<string, unknown>;
}

const RESTART_LINE = "The server restarted while this prediction was running; it runs again from the start.\n";
const SHUTDOWN_LINE = "The server shut down while this prediction was running; it runs again from the start when the server is back.\n";
/** Previews per image on a prediction's stream (the cheap preview path: a few percent of a step each). */
const PREVIEWS = 3;

/**
 * Runs predictions from the store, oldest first, keeping at most `concurrency` of them in the engine at a
 * time (enough to fill its batches; the rest wait in the store, so a restart loses none). It moves each one
 * through starting → processing → succeeded | failed | canceled | aborted, exactly once, and tells the
 * stream subscribers and the webhook dispatcher as it goes. `Cancel-After` deadlines and retention sweeps
 * run on the injected clock.
 */
export class PredictionRunner {
  /** In this process, or the store's (Redis pub/sub: a stream on another replica hears this runner). */
  readonly events: PredictionEventBus;
  readonly #o: PredictionRunnerOptions;
  readonly #queue: string[] = [];
  readonly #running = new Map<string, Running>();
  readonly #deadlines = new Map<string, ClockTimer>();
  readonly #waiters = new Map<string, Set<() => void>>();
  readonly #concurrency: number;
  /** Predictions created with `stream: true`: previews are made for them even before a stream is open. */
  readonly #previewsFor = new Set<string>();
  #sweepTimer: ClockTimer | null = null;
  #retryTimer: ClockTimer | null = null;
  #adoptTimer: ClockTimer | null = null;
  #closed = false;
  /** Moving average of predict time, ms (for Retry-After). */
  #avgMs = 0;
  /** Queued and running predictions as last counted (Retry-After is computed synchronously). */
  #pendingSeen = 0;
  /** Claims in flight (store.start is asynchronous on Redis): they hold a slot like a run. */
  #claiming = 0;
  /** Per prediction, the store writes not yet done: a log line must land before the final status. */
  readonly #writes = new Map<string, Promise<unknown>>();

  constructor(o: PredictionRunnerOptions) {
    this.#o = o;
    this.events = o.store.events ?? new PredictionEvents();
    // Another replica's cancel: only the replica running the prediction acts (the others ignore it).
    o.store.onCancelRequest?.((id) => this.#stopRun(id, "cancel", new AbortedError("the prediction was canceled")));
    const { numGpus, limits } = o.ctx.engine.config;
    this.#concurrency = Math.max(1, numGpus * limits.maxBatchSize * 2);
  }

  /** Picks up what the store holds: interrupted runs go back to the queue (said in their logs), queued ones run. */
  async start(): Promise<void> {
    await this.#pickUp();
    void this.sweep();
    const every = this.#o.store.adoptEveryMs;
    if (every) this.#adoptTimer = this.#o.clock.timer(() => void this.#adoptAgain(every), every);
  }

  /** Queues what the store holds for this server and has not been queued here yet. */
  async #pickUp(): Promise<void> {
    const { store } = this.#o;
    const interrupted = await store.requeueInterrupted(RESTART_LINE);
    if (interrupted.length > 0) this.#o.log.warn({ predictions: interrupted.map((p) => p.id) }, "predictions interrupted by a restart run again from the start");
    for (const p of await store.queued()) {
      if (this.#queue.includes(p.id) || this.#running.has(p.id) || this.#deadlines.has(p.id)) continue;
      this.#queue.push(p.id);
      this.#armDeadline(p);
    }
    this.#pump();
  }

  /** On a shared store: another server's predictions, left when it died, are taken over here (then again). */
  async #adoptAgain(every: number): Promise<void> {
    if (this.#closed) return;
    await this.#pickUp().catch((err: unknown) => this.#o.log.error({ err }, "could not look for predictions to take over; trying again later"));
    if (!this.#closed) this.#adoptTimer = this.#o.clock.timer(() => void this.#adoptAgain(every), every);
  }

  /** Stores a new prediction and queues it; `previews`: its client will stream it (`stream: true`), make previews. */
  async create(p: NewPrediction, opts: { previews?: boolean } = {}): Promise<PredictionRecord> {
    const rec = await this.#o.store.insert(p);
    if (opts.previews) this.#previewsFor.add(rec.id);
    this.#queue.push(rec.id);
    this.#armDeadline(rec);
    this.#pump();
    return (await this.#o.store.get(rec.id)) ?? rec;
  }

  /**
   * 1-based place in line of a prediction that waits (in our queue, or started but still in the engine's
   * queue), counting every request the engine holds ahead of it; 0 once it runs, or when it is final or unknown.
   */
  queuePosition(id: string): number {
    const run = this.#running.get(id);
    if (run) return run.requestId ? this.#o.ctx.engine.queuePosition(run.requestId) : 0;
    const i = this.#queue.indexOf(id);
    return i < 0 ? 0 : this.#o.ctx.engine.stats.queued + i + 1;
  }

  /** Queued and running predictions (on Redis: across the fleet). */
  async pendingCount(): Promise<number> {
    return (this.#pendingSeen = await this.#o.store.pendingCount());
  }

  /** Seconds a client refused for a full queue should wait: the queue ahead times the recent predict time. */
  retryAfterSeconds(): number {
    const ms = ((this.#pendingSeen + 1) * (this.#avgMs || 1_000)) / this.#concurrency;
    return Math.min(60, Math.max(1, Math.ceil(ms / 1_000)));
  }

  /**
   * Cancels a prediction: a queued one ends `canceled` at once; a running one stops at its next denoising
   * step and then ends `canceled`. A final one stays as it is. Resolves with the prediction after the call.
   * One running on another server (a Redis fleet) is asked to stop there.
   */
  async cancel(id: string): Promise<PredictionRecord | null> {
    const { store } = this.#o;
    const rec = await store.get(id);
    if (!rec || isFinal(rec.status)) return rec;
    // Running here: it stops at its next step, then ends canceled. Else queued: it ends now. Else running elsewhere.
    if (!this.#stopRun(id, "cancel", new AbortedError("the prediction was canceled"))) {
      const ended = await this.#finish(id, "canceled", { log: "Canceled before it started.\n", onlyIfQueued: true });
      if (!ended) await store.requestCancel?.(id);
    }
    return store.get(id);
  }

  /** Resolves when `id` is final, or after `ms` on the clock, whichever is first. */
  async waitFinal(id: string, ms: number): Promise<void> {
    const rec = await this.#o.store.get(id);
    if (!rec || isFinal(rec.status) || ms <= 0 || this.#closed) return;
    return new Promise((resolve) => {
      let set = this.#waiters.get(id);
      if (!set) this.#waiters.set(id, (set = new Set()));
      const done = () => {
        timer.clear();
        set.delete(done);
        resolve();
      };
      const timer = this.#o.clock.timer(done, ms);
      set.add(done);
    });
  }

  /** Deletes completed predictions older than the TTL (and their files), then re-arms itself. */
  async sweep(): Promise<void> {
    if (this.#closed) return;
    let removed: string[] = [];
    try {
      removed = await this.#o.store.deleteCompletedBefore(this.#o.clock.now() - this.#o.ttlMs);
    } catch (err) {
      this.#o.log.error({ err }, "retention sweep failed; it runs again later");
    }
    for (const id of removed) this.#o.webhooks?.forget?.(id); // their delivery records go with them
    if (removed.length > 0) this.#o.log.info({ removed: removed.length }, "deleted predictions past --job-ttl");
    // At least every hour, and often enough that nothing outlives its TTL by more than a tenth of it.
    const every = Math.max(1_000, Math.min(3_600_000, Math.floor(this.#o.ttlMs / 10)));
    if (this.#sweepTimer) this.#sweepTimer.refresh();
    else this.#sweepTimer = this.#o.clock.timer(() => void this.sweep(), every);
  }

  /**
   * Stops: no new starts; running predictions are stopped at their next step and go back to the queue (they
   * run again on the next start); waiting `Prefer: wait` calls are answered; the store stays open.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const run of this.#running.values()) {
      run.stop ??= "shutdown";
      run.controller.abort(new ClosedError("the server is shutting down; the prediction runs again on its next start"));
    }
    await Promise.allSettled([...this.#running.values()].map((r) => r.done));
    for (const t of this.#deadlines.values()) t.clear();
    this.#sweepTimer?.clear();
    this.#retryTimer?.clear();
    this.#adoptTimer?.clear();
    for (const set of this.#waiters.values()) for (const w of [...set]) w();
  }

  /** Stops a run held by this runner (false: none here). */
  #stopRun(id: string, why: StopReason, reason: Error): boolean {
    const run = this.#running.get(id);
    if (!run) return false;
    run.stop ??= why;
    run.controller.abort(reason);
    return true;
  }

  #armDeadline(rec: PredictionRecord): void {
    if (rec.deadline === null || isFinal(rec.status)) return;
    const fire = () => {
      this.#deadlines.delete(rec.id);
      const run = this.#running.get(rec.id);
      if (run) {
        run.stop ??= "deadline";
        run.controller.abort(new AbortedError("the Cancel-After deadline passed"));
      } else void this.#finish(rec.id, "aborted", { log: "Aborted: the Cancel-After deadline passed before it started.\n", onlyIfQueued: true });
    };
    const left = rec.deadline - this.#o.clock.now();
    if (left <= 0) fire();
    else this.#deadlines.set(rec.id, this.#o.clock.timer(fire, left));
  }

  #pump(): void {
    while (!this.#closed && this.#running.size + this.#claiming < this.#concurrency && this.#queue.length > 0) {
      const id = this.#queue.shift()!;
      const claim = this.#o.store.start(id, this.#o.clock.now());
      if (typeof claim === "boolean") {
        if (claim) this.#launch(id); // else canceled or aborted while queued
        continue;
      }
      this.#claiming++;
      void claim
        .then((started) => {
          this.#claiming--;
          if (started) this.#launch(id);
          else this.#pump(); // canceled or aborted while queued
        })
        .catch((err: unknown) => {
          this.#claiming--;
          this.#o.log.error({ err, prediction: id }, "could not start a prediction; it stays queued until the next start");
        });
    }
  }

  #launch(id: string): void {
    const run: Running = { controller: new AbortController(), stop: null, done: Promise.resolve() };
    this.#running.set(id, run);
    run.done = this.#run(id, run)
      // A store that fails under a run (disk full) must not take the server down: the prediction stays pending.
      .catch((err: unknown) => this.#o.log.error({ err, prediction: id }, "prediction run failed in the server"))
      .finally(() => {
        this.#running.delete(id);
        this.#pump();
      });
  }

  async #run(id: string, run: Running): Promise<void> {
    const { ctx, store } = this.#o;
    const rec = (await store.get(id))!;
    this.#notify(rec, "start");
    // Its Cancel-After deadline fired while the start was being claimed (a shared store answers later).
    if (rec.deadline !== null && !this.#deadlines.has(id) && this.#o.clock.now() >= rec.deadline) this.#stopRun(id, "deadline", new AbortedError("the Cancel-After deadline passed"));
    const t0 = performance.now();
    try {
      // The record's version is the served id of the model it runs on (issue 24); an old record's is the default's.
      const plan = await planRequest(rec.input as PredictionInput, ctx.config.limits, ctx.model, run.controller.signal, ctx.model.models.requestModel(rec.version));
      // The prediction id is the request id (the queue executor's job id: a re-run attaches to the same job).
      const request = new OmniDiffusionRequest({ ...plan.init, requestId: id });
      run.requestId = request.requestId;
      // Previews cost a decode per image in the worker: made only for a stream that is open as the run starts,
      // or one its client said it will open (`stream: true`; the latest preview waits for it, see PredictionEvents).
      const wanted = this.#previewsFor.has(id);
      const every = this.events.count(id) > 0 || wanted ? previewInterval(plan.steps, PREVIEWS) : 0;
      let lastStep = -1;
      const sent = new Map<number, number>();
      const out = await ctx.engine.generate(request, {
        signal: run.controller.signal,
        fieldName: plan.fieldName,
        limits: plan.limits,
        ...(every ? { previewEvery: every } : {}),
        onProgress: (p) => {
          for (const img of p.preview ?? []) {
            const k = sent.get(img.index) ?? 0;
            if (k >= PREVIEWS || (this.events.count(id) === 0 && !wanted)) continue;
            sent.set(img.index, k + 1);
            this.events.emit(id, { type: "preview", index: img.index, png: pngOf(img) });
          }
          if (p.step === lastStep) return; // one line per step, whichever image reported it
          lastStep = p.step;
          this.#log(id, progressLine(p.step, p.totalSteps));
        },
      });
      const names = await Promise.all(
        out.images.map(async (img, i) => {
          const name = `${i}.png`;
          await store.files.write(id, name, pngOf(img));
          return name;
        }),
      );
      const ms = performance.now() - t0;
      this.#avgMs = this.#avgMs === 0 ? ms : 0.8 * this.#avgMs + 0.2 * ms;
      ctx.metrics.generation("ok", ms / 1000, out.metrics, out.images.length);
      await this.#finish(id, "succeeded", { output: names, log: `Generated ${names.length} image(s).\n` });
    } catch (err) {
      const e = toOmniError(err);
      if (run.stop === "shutdown") {
        await store.requeue(id, SHUTDOWN_LINE);
        return;
      }
      ctx.metrics.generation(run.stop ? "aborted" : "error", (performance.now() - t0) / 1000);
      if (run.stop === "cancel") await this.#finish(id, "canceled", { log: "Canceled while running.\n" });
      else if (run.stop === "deadline") await this.#finish(id, "canceled", { log: "Canceled: the Cancel-After deadline passed while it ran.\n" });
      else if (e instanceof QueueFullError) await this.#retryLater(id);
      else {
        if (!isPublicError(e)) this.#o.log.error({ err: e, prediction: id }, "prediction failed");
        const message = isPublicError(e) ? e.message : `internal error (prediction ${id}); the details are in the server log`;
        await this.#finish(id, "failed", { error: message, log: `Failed: ${message}\n` });
      }
    }
  }

  /** The engine's queue was full (the synchronous routes share it): back to the front of ours, retried in 1 s. */
  async #retryLater(id: string): Promise<void> {
    await this.#o.store.requeue(id, "");
    this.#queue.unshift(id);
    if (this.#retryTimer) this.#retryTimer.refresh();
    else this.#retryTimer = this.#o.clock.timer(() => this.#pump(), 1_000);
  }

  #log(id: string, text: string): void {
    const { store } = this.#o;
    this.events.emit(id, { type: "logs", text });
    // Chained per prediction: each line lands in order, and before the final status (#finish waits for it).
    const write = (this.#writes.get(id) ?? Promise.resolve())
      .then(async () => {
        await store.appendLog(id, text);
        if (!this.#o.webhooks) return;
        const rec = await store.get(id);
        if (rec) this.#notify(rec, "logs");
      })
      .catch((err: unknown) => this.#o.log.error({ err, prediction: id }, "could not store a log line"));
    this.#writes.set(id, write);
    void write.finally(() => this.#writes.get(id) === write && this.#writes.delete(id));
  }

  /** True when this call moved the prediction to `status` (false: it was final already, or not queued with `onlyIfQueued`). */
  async #finish(id: string, status: PredictionStatus, fields: { output?: string[]; error?: string; log?: string; onlyIfQueued?: boolean }): Promise<boolean> {
    const { store } = this.#o;
    await this.#writes.get(id);
    if (!(await store.finish(id, status, this.#o.clock.now(), fields))) return false;
    this.#deadlines.get(id)?.clear();
    this.#deadlines.delete(id);
    this.#previewsFor.delete(id);
    const rec = (await store.get(id))!;
    if (fields.log) this.events.emit(id, { type: "logs", text: fields.log });
    if (rec.output) {
      this.events.emit(id, { type: "output", names: rec.output });
      this.#notify(rec, "output");
    }
    this.events.emit(id, { type: "done", status, error: rec.error });
    this.#notify(rec, "completed");
    for (const w of [...(this.#waiters.get(id) ?? [])]) w();
    this.#waiters.delete(id);
    return true;
  }

  #notify(rec: PredictionRecord, event: WebhookEvent): void {
    const hooks = this.#o.webhooks;
    if (!hooks || !rec.webhook) return;
    try {
      hooks.notify(rec.id, event, this.#o.render(rec), { url: rec.webhook, eventsFilter: rec.webhookEventsFilter });
    } catch (err) {
      this.#o.log.error({ err, prediction: rec.id, event }, "webhook dispatcher refused a notification");
    }
  }
}

export type { PredictionEvent };
