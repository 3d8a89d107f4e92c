import type { OmniDiffusionConfig } from "../../core/config.js";
import { ClosedError, TimeoutError, WorkerDiedError, WorkerError, toOmniError, type OmniError } from "../../errors/omni-error.js";
import { Deadline } from "../../policies/deadline.js";
import { restartPolicy } from "../../policies/worker-policies.js";
import type { Clock } from "../../utils/clock.js";
import { Listeners } from "../../utils/listeners.js";
import type { MultiprocOptions } from "./multiproc-options.js";
import { RankSlot } from "./rank-slot.js";
import { workerInitOf } from "./worker-init.js";
import { settleWithin } from "../../utils/settle-within.js";
import { WorkerProcess, describeEnd, type WorkerExit } from "./worker-process.js";

/** What happened to a worker process, for logs, metrics and tests (`MultiprocExecutor.onWorkerEvent`). */
export type WorkerEvent =
  /** It sent no heartbeat for `silentMs` and is being SIGKILLed (then `exited`, then `restarted`). */
  | { type: "unresponsive"; rank: number; pid: number | undefined; silentMs: number }
  /** A serving worker's process ended; its requests are retried on a live rank (up to `maxWorkerRetries`). */
  | { type: "exited"; rank: number; pid: number | undefined; exitCode: number | null; signal: NodeJS.Signals | null; silentMs: number | null }
  /** A replacement process for `rank` is ready. */
  | { type: "restarted"; rank: number; pid: number | undefined };

/**
 * Keeps the multi-process executor's ranks alive (vLLM's exit monitor): starts one worker process per
 * rank, notices a death (exit event) or a hang (missed heartbeats, then SIGKILL), restarts the rank under
 * {@link restartPolicy}, marks it failed once the restarts are exhausted, and calls `onAllFailed` once when
 * no rank is left. Routing and RPCs stay in the executor; this class only owns processes.
 */
export class RankSupervisor {
  readonly slots: RankSlot[];
  /** `numInferenceSteps` a request without one runs, as the workers' READY reported it (routing cost). */
  defaultSteps = 20;
  /** Every worker process not yet exited, including ones still starting (shutdown stops them all). */
  readonly #procs = new Set<WorkerProcess>();
  /** Restarts per rank (every process spawned after the first), for metrics. */
  readonly #restarts = new Map<number, number>();
  readonly #events = new Listeners<WorkerEvent>("worker event");
  readonly #config: OmniDiffusionConfig;
  readonly #opts: MultiprocOptions;
  readonly #onAllFailed: (err: OmniError) => void;
  readonly #clock: Clock | undefined;
  #closing = false;
  #failureNotified = false;

  /** `clock` times the heartbeat deadlines (default: the real clock). */
  constructor(config: OmniDiffusionConfig, opts: MultiprocOptions, onAllFailed: (err: OmniError) => void, clock?: Clock) {
    this.#config = config;
    this.#clock = clock;
    this.#opts = opts;
    this.#onAllFailed = onAllFailed;
    this.slots = Array.from({ length: config.numGpus }, (_, rank) => new RankSlot(rank));
  }

  /** True once `stop` began. */
  get closing(): boolean {
    return this.#closing;
  }

  restartsOf(rank: number): number {
    return this.#restarts.get(rank) ?? 0;
  }

  onEvent(listener: (e: WorkerEvent) => void): { dispose(): void } {
    return this.#events.add(listener);
  }

  /**
   * Starts every rank; each must send READY within `workerStartTimeoutMs`. One failure kills the others
   * (they must not outlive a failed start) and rejects with that rank's error.
   */
  async start(): Promise<void> {
    const ms = this.#config.workerStartTimeoutMs;
    const notReady = () => this.slots.filter((s) => s.status !== "ready").map((s) => s.rank);
    const dl = new Deadline(ms, undefined, () => {
      const ranks = notReady();
      return new TimeoutError(`worker rank(s) ${ranks.join(", ")} did not become ready within ${ms}ms (workerStartTimeoutMs)`, {
        data: { ranks, timeoutMs: ms, method: "init" },
      });
    });
    const procs = this.slots.map((slot) => this.#spawn(slot, false));
    try {
      await Promise.all(
        procs.map(async (proc, i) => {
          const ready = await dl.race(proc.ready);
          this.defaultSteps = ready.info.defaults?.numInferenceSteps ?? this.defaultSteps;
          this.slots[i]!.markReady(proc);
        }),
      );
    } catch (err) {
      for (const p of procs) p.kill();
      const stuck = (await Promise.all(procs.map((p) => settleWithin(p.exited, 5_000, { unref: true })))).some((s) => s.status !== "fulfilled");
      if (stuck) process.emitWarning(`MultiprocExecutor: a worker did not exit after SIGKILL during a failed init`);
      for (const s of this.slots) s.markFailed(new ClosedError("MultiprocExecutor failed to start", { cause: err }), "closed");
      throw err;
    } finally {
      dl.dispose();
    }
  }

  /** Closes every rank, asks each process to exit, SIGKILLs it after `shutdownGraceMs`; throws naming a process that outlived SIGKILL. */
  async stop(): Promise<void> {
    this.#closing = true;
    const closed = new ClosedError("MultiprocExecutor is shut down");
    for (const s of this.slots) s.markFailed(closed, "closed");
    const procs = [...this.#procs];
    const exits = await Promise.all(procs.map((p) => p.stop(this.#opts.shutdownGraceMs)));
    const stuck = procs.filter((_, i) => exits[i] === null).map((p) => p.pid);
    if (stuck.length) throw new WorkerError(`worker process(es) ${stuck.join(", ")} did not exit after SIGKILL`, { data: { pids: stuck } });
  }

  #spawn(slot: RankSlot, restart: boolean): WorkerProcess {
    const heartbeat = {
      timeoutMs: this.#opts.heartbeatTimeoutMs,
      clock: this.#clock,
      onMissed: (silentMs: number) => {
        process.emitWarning(`MultiprocExecutor: worker rank ${slot.rank} (pid ${proc.pid}) sent no heartbeat for ${silentMs}ms; killing and replacing it`);
        this.#events.emit({ type: "unresponsive", rank: slot.rank, pid: proc.pid, silentMs });
      },
    };
    const init = { ...workerInitOf(this.#config, slot.rank), heartbeatIntervalMs: this.#opts.heartbeatIntervalMs };
    const proc: WorkerProcess = new WorkerProcess(slot.rank, init, (exit) => this.#onExit(slot, proc, exit), heartbeat);
    this.#procs.add(proc);
    void proc.exited.then(() => this.#procs.delete(proc));
    slot.starting(proc, restart);
    if (restart) this.#restarts.set(slot.rank, this.restartsOf(slot.rank) + 1);
    return proc;
  }

  /** The exit monitor: a serving worker died. Its pending calls already failed (WorkerProcess); restart it. */
  #onExit(slot: RankSlot, proc: WorkerProcess, exit: WorkerExit): void {
    // A process that dies while starting is handled by whoever awaits its `ready`.
    if (this.#closing || slot.proc !== proc || slot.status !== "ready") return;
    slot.died(exit);
    this.#events.emit({ type: "exited", rank: slot.rank, pid: exit.pid, exitCode: exit.exitCode, signal: exit.signal, silentMs: exit.silentMs });
    this.#restart(slot).catch((err: unknown) => {
      slot.markFailed(new WorkerDiedError(`restarting worker rank ${slot.rank} failed: ${toOmniError(err).message}`, { cause: err, data: { rank: slot.rank } }));
    });
  }

  async #restart(slot: RankSlot): Promise<void> {
    const attempts = this.#opts.maxRestartAttempts;
    const ms = this.#config.workerStartTimeoutMs;
    let lastErr: OmniError | null = null;
    if (attempts > 0) {
      try {
        await restartPolicy({ attempts, backoffMs: this.#opts.restartBackoffMs }).execute(async () => {
          if (this.#closing) return;
          const proc = this.#spawn(slot, true);
          const dl = new Deadline(ms, undefined, () => new TimeoutError(`restarted worker rank ${slot.rank} was not ready within ${ms}ms`, { data: { rank: slot.rank, timeoutMs: ms } }));
          try {
            await dl.race(proc.ready);
            if (this.#closing) return; // shutdown stops this process with the others
            slot.markReady(proc);
            this.#events.emit({ type: "restarted", rank: slot.rank, pid: proc.pid });
          } catch (err) {
            lastErr = toOmniError(err);
            proc.kill();
            await settleWithin(proc.exited, 5_000, { unref: true });
            throw lastErr;
          } finally {
            dl.dispose();
          }
        });
        return;
      } catch {
        // Every start failed: lastErr says why the last one did.
      }
    }
    if (this.#closing) return;
    const last = lastErr as OmniError | null;
    slot.markFailed(
      new WorkerDiedError(`worker rank ${slot.rank} died (${describeExit(slot.lastExit)}) and ${attempts} restart(s) failed${last ? `: ${last.message}` : ""}`, {
        cause: last,
        data: { rank: slot.rank, attempts },
      }),
    );
    if (!this.#failureNotified && this.slots.every((s) => s.status === "failed")) {
      this.#failureNotified = true;
      this.#onAllFailed(slot.failure!);
    }
  }
}

/** `pid N exited with code 1`, for messages about a rank's last death. */
export function describeExit(exit: WorkerExit | null): string {
  return exit ? `pid ${exit.pid} ${describeEnd(exit)}` : "unknown exit";
}
