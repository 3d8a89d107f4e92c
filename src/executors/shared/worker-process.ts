import { settleWithin } from "../../utils/settle-within.js";
import { inspect } from "node:util";
import { fork, type ChildProcess } from "node:child_process";
import type { Readable } from "node:stream";
import { createRequire } from "node:module";
import { extname } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { WorkerDiedError, WorkerError, deserializeError, type OmniError } from "../../errors/omni-error.js";
import type { StepProgress } from "../../core/progress.js";
import type { Clock } from "../../utils/clock.js";
import { HeartbeatMonitor } from "./heartbeat-monitor.js";
import {
  HEARTBEAT_FD,
  WORKER_INIT_ENV,
  fromProgressItem,
  isWorkerMessage,
  packBinary,
  unpackBinary,
  type BatchMessage,
  type ParentMessage,
  type ReadyMessage,
  type RpcCallMessage,
  type WorkerInit,
  type WorkerMessage,
} from "../../protocol/worker-ipc.js";

/** How a worker process ended. */
export interface WorkerExit {
  rank: number;
  pid: number | undefined;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** Last lines the worker wrote to stderr (for errors about a worker that died). */
  stderrTail: string;
  /** Set when the parent killed it for missing heartbeats: how long it had been silent, ms. */
  silentMs: number | null;
}

/** Heartbeat settings of one {@link WorkerProcess} (the worker's interval travels in its `WorkerInit`). */
export interface WorkerHeartbeat {
  /** Silence after which the worker is SIGKILLed, ms. */
  timeoutMs: number;
  /** Called once, just before the kill. */
  onMissed?: (silentMs: number) => void;
  /** Time source of the deadline (default: the real clock). */
  clock?: Clock;
}

/** Options of one {@link WorkerProcess.call}. */
export interface WorkerCallOptions {
  /** Absolute `Date.now()` deadline, passed to the worker so it stops work nobody waits for. */
  deadline: number;
  onProgress?: (p: StepProgress) => void;
  /** Cancels the wait (the pending entry is dropped; a late reply is ignored). */
  signal?: AbortSignal;
}

interface PendingCall {
  method: string;
  resolve: (v: unknown) => void;
  reject: (e: OmniError) => void;
  onProgress?: (p: StepProgress) => void;
  cleanup: () => void;
}

const STDERR_TAIL_BYTES = 4096;
const noop = () => undefined;

/** Every live worker child of this process, killed synchronously when the parent exits. */
const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // 'exit' handlers must be synchronous: a SIGKILL is the one thing that surely finishes in time.
  process.on("exit", () => {
    for (const child of liveChildren) {
      try {
        child.kill("SIGKILL");
      } catch {
        // Already gone: nothing left to clean up.
      }
    }
  });
}

/** The worker entry next to this build: `.ts` under tsx, `.js` from dist/. */
function workerEntry(): { path: string; execArgv: string[] } {
  const ext = extname(fileURLToPath(import.meta.url));
  const fromJs = ext === ".js" || ext === ".mjs" || ext === ".cjs";
  const path = fileURLToPath(new URL(`../../workers/worker-main${fromJs ? ext : ".ts"}`, import.meta.url));
  if (fromJs) return { path, execArgv: [] };
  let tsx: string;
  try {
    // An absolute URL, so the child finds tsx whatever its working directory.
    tsx = pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href;
  } catch (err) {
    throw new WorkerError(`running from TypeScript source needs the "tsx" package to start workers: ${(err as Error).message}`, { cause: err });
  }
  return { path, execArgv: ["--import", tsx] };
}

/**
 * The parent's handle on one worker child process: spawns it with `fork`, tracks its READY handshake,
 * matches replies to calls, and rejects every pending call with a WorkerDiedError the moment the process
 * exits. Owns no timers: deadlines belong to the caller, which cancels waits through `signal`.
 */
export class WorkerProcess {
  readonly rank: number;
  readonly child: ChildProcess;
  /** Resolves with the worker's `ready` message; rejects with its load error or a WorkerDiedError. */
  readonly ready: Promise<ReadyMessage>;
  /** Resolves once the process has exited (never rejects). */
  readonly exited: Promise<WorkerExit>;
  #pending = new Map<number, PendingCall>();
  #nextId = 1;
  /** Messages of this turn of the event loop, not yet written (see #send). */
  #outbox: ParentMessage[] = [];
  #state: "starting" | "ready" | "exited" = "starting";
  #exit: WorkerExit | null = null;
  #stderrTail = "";
  #readyInfo: ReadyMessage | null = null;
  #settleReady!: { resolve: (m: ReadyMessage) => void; reject: (e: OmniError) => void };
  #onExit: (exit: WorkerExit) => void;
  #heartbeat: HeartbeatMonitor | null = null;
  #silentMs: number | null = null;

  /**
   * Spawns the worker. With `heartbeat` (and `init.heartbeatIntervalMs` > 0) the worker beats on its own
   * pipe, and a worker silent for `heartbeat.timeoutMs` is SIGKILLed: its pending calls then fail with a
   * WorkerDiedError saying so, exactly like a worker that died by itself.
   */
  constructor(rank: number, init: WorkerInit, onExit: (exit: WorkerExit) => void = () => undefined, heartbeat?: WorkerHeartbeat) {
    this.rank = rank;
    this.#onExit = onExit;
    this.ready = new Promise<ReadyMessage>((resolve, reject) => (this.#settleReady = { resolve, reject }));
    // Callers may never await `ready` (a restart that is abandoned); the rejection is reported elsewhere.
    this.ready.catch(() => undefined);
    let resolveExited!: (e: WorkerExit) => void;
    this.exited = new Promise<WorkerExit>((r) => (resolveExited = r));

    const { path, execArgv } = workerEntry();
    installExitHook();
    this.child = fork(path, [], {
      execArgv,
      env: { ...process.env, [WORKER_INIT_ENV]: JSON.stringify(init) },
      // Slot 4 (HEARTBEAT_FD) is the heartbeat pipe: beats must not queue behind large IPC replies.
      stdio: ["ignore", "inherit", "pipe", "ipc", "pipe"],
      // JSON, typed arrays packed as base64 of their bytes (packBinary): cheaper per message than "advanced".
      serialization: "json",
    });
    liveChildren.add(this.child);
    const beats = this.child.stdio[HEARTBEAT_FD] as Readable | null;
    if (beats) {
      if (heartbeat && init.heartbeatIntervalMs) {
        this.#heartbeat = new HeartbeatMonitor(beats, heartbeat.timeoutMs, (silentMs) => {
          if (this.#exit) return;
          this.#silentMs = silentMs;
          heartbeat.onMissed?.(silentMs);
          this.kill();
        }, heartbeat.clock);
      } else {
        beats.resume();
      }
    }

    this.child.stderr?.on("data", (chunk: Buffer) => {
      process.stderr.write(chunk);
      this.#stderrTail = (this.#stderrTail + chunk.toString("utf8")).slice(-STDERR_TAIL_BYTES);
    });
    this.child.on("message", (msg: unknown) => this.#onMessage(msg));
    const finish = (exitCode: number | null, signal: NodeJS.Signals | null) => {
      if (this.#exit) return;
      liveChildren.delete(this.child);
      this.#heartbeat?.stop();
      this.#exit = { rank, pid: this.child.pid, exitCode, signal, stderrTail: this.#stderrTail.trim(), silentMs: this.#silentMs };
      this.#failAll(this.#exit);
      resolveExited(this.#exit);
      this.#onExit(this.#exit);
    };
    // 'close' follows 'exit' once the IPC channel and stderr are drained, so a `load-error` or a reply the
    // worker sent just before dying is delivered first. The timer covers a pipe some other process holds open.
    this.child.on("exit", (code, signal) => {
      setTimeout(() => finish(code, signal), 1_000).unref();
    });
    this.child.on("close", (code: number | null, signal: NodeJS.Signals | null) => finish(code, signal));
    this.child.on("error", (err) => {
      // A failed spawn emits 'error' and no 'exit'; later errors (a send on a closed channel) are followed by 'exit'.
      if (this.child.pid === undefined) {
        this.#stderrTail += `\nspawn failed: ${err.message}`;
        finish(null, null);
      }
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get state(): "starting" | "ready" | "exited" {
    return this.#state;
  }

  /** How the process ended, once it has. */
  get exitInfo(): WorkerExit | null {
    return this.#exit;
  }

  /** The `ready` message, once received. */
  get info(): ReadyMessage | null {
    return this.#readyInfo;
  }

  /** Number of calls sent and not yet answered. */
  get pendingCalls(): number {
    return this.#pending.size;
  }

  /** Sends one RPC; resolves with its result, rejects with the rebuilt worker error (rank in `data`). */
  call(method: string, args: unknown[], kwargs: Record<string, unknown>, opts: WorkerCallOptions): Promise<unknown> {
    return this.start(method, args, kwargs, opts).reply;
  }

  /**
   * {@link call}, also returning the call's id: a caller that times many calls with one timer (and no
   * AbortSignal, the RPC hot path) stops waiting for one with {@link drop}.
   */
  start(method: string, args: unknown[], kwargs: Record<string, unknown>, opts: WorkerCallOptions): { id: number; reply: Promise<unknown> } {
    const id = this.#nextId++;
    const reply = new Promise<unknown>((resolve, reject) => {
      if (this.#exit) return reject(this.#diedError(this.#exit, method));
      const signal = opts.signal;
      if (signal?.aborted) return reject(signal.reason as OmniError);
      let cleanup: () => void = noop;
      if (signal) {
        const onAbort = () => {
          this.#pending.delete(id);
          reject(signal.reason as OmniError);
        };
        signal.addEventListener("abort", onAbort, { once: true });
        cleanup = () => signal.removeEventListener("abort", onAbort);
      }
      this.#pending.set(id, { method, resolve, reject, onProgress: opts.onProgress, cleanup });
      // Empty args/kwargs are left out: the smaller the message, the cheaper the clone on both sides.
      const msg: RpcCallMessage = { type: "call", id, method, deadline: opts.deadline };
      if (args.length) msg.args = args;
      if (Object.keys(kwargs).length) msg.kwargs = kwargs;
      if (opts.onProgress) msg.progress = true;
      this.#send(msg);
    });
    return { id, reply };
  }

  /** Stops waiting for call `id` (its promise stays pending; a late reply is ignored). */
  drop(id: number): void {
    this.#pending.get(id)?.cleanup();
    this.#pending.delete(id);
  }

  /** Asks the worker to stop `requestId` between steps. */
  abort(requestId: string): void {
    this.#send({ type: "abort", requestId });
  }

  /** Sends `shutdown`, waits up to `graceMs` for the exit, then SIGKILLs and waits (bounded) for the exit. */
  async stop(graceMs: number): Promise<WorkerExit | null> {
    if (this.#exit) return this.#exit;
    this.#send({ type: "shutdown" });
    // `exited` never rejects; the timers must not keep a parent that is exiting alive.
    const graceful = await settleWithin(this.exited, graceMs, { unref: true });
    if (graceful.status === "fulfilled") return graceful.value;
    this.kill();
    const killed = await settleWithin(this.exited, 5_000, { unref: true });
    return killed.status === "fulfilled" ? killed.value : null;
  }

  /** SIGKILL now. The exit handler still runs when the process is reaped. */
  kill(): void {
    if (this.#exit) return;
    try {
      this.child.kill("SIGKILL");
    } catch (err) {
      process.emitWarning(`cannot kill worker rank ${this.rank} (pid ${this.child.pid}): ${(err as Error).message}`);
    }
  }

  /**
   * Sends a message. A `generate` call waits for the end of this turn of the event loop, and leaves with
   * every message queued after it in one write (in order): the calls of a burst reach the worker together.
   * Anything else goes at once (a ping pays no wait), unless the outbox holds messages it must follow.
   */
  #send(msg: ParentMessage): void {
    if (this.#exit || !this.child.connected) return; // the exit handler fails pending calls
    const packed = msg.type === "call" && (msg.args || msg.kwargs) ? (packBinary(msg) as ParentMessage) : msg;
    if (!this.#outbox.length && !(msg.type === "call" && msg.method === "generate")) return this.#write([packed]);
    if (this.#outbox.push(packed) === 1) setImmediate(() => this.#write(this.#outbox.splice(0)));
  }

  #write(messages: ParentMessage[]): void {
    if (!messages.length || this.#exit || !this.child.connected) return;
    const envelope: ParentMessage | BatchMessage = messages.length === 1 ? messages[0]! : { type: "batch", messages };
    this.child.send(envelope, (err) => {
      // The channel closed under us: the process is exiting, and its exit fails the pending calls.
      if (err && this.child.connected) process.emitWarning(`worker rank ${this.rank}: send ${messages.map((m) => m.type).join(", ")} failed: ${err.message}`);
    });
  }

  #onMessage(packed: unknown): void {
    const raw = unpackBinary(packed);
    if (!isWorkerMessage(raw)) {
      process.emitWarning(`worker rank ${this.rank} sent a malformed message: ${inspect(raw, { depth: 2, breakLength: Infinity }).slice(0, 200)}`);
      return;
    }
    const msg: WorkerMessage = raw;
    switch (msg.type) {
      case "ready":
        if (this.#state !== "starting") return;
        this.#state = "ready";
        this.#readyInfo = msg;
        this.#settleReady.resolve(msg);
        return;
      case "load-error":
        this.#settleReady.reject(deserializeError(msg.error, { rank: this.rank, pid: msg.pid }));
        return;
      case "progress":
        for (const item of msg.items) {
          try {
            this.#pending.get(item.id)?.onProgress?.(fromProgressItem(item));
          } catch (err) {
            // A throwing progress callback must not crash the IPC listener (and with it the parent).
            process.emitWarning(`onProgress callback threw: ${(err as Error)?.message ?? String(err)}`);
          }
        }
        return;
      case "reply": {
        const p = this.#pending.get(msg.id);
        if (!p) return; // the caller stopped waiting (deadline, abort)
        this.#pending.delete(msg.id);
        p.cleanup();
        if (msg.ok) p.resolve(msg.result);
        else p.reject(deserializeError(msg.error, { rank: this.rank, method: p.method }));
        return;
      }
    }
  }

  #failAll(exit: WorkerExit): void {
    if (this.#state === "starting") {
      const how = describeEnd(exit);
      const tail = exit.stderrTail ? `: ${exit.stderrTail.split("\n").slice(-5).join(" | ")}` : "";
      this.#settleReady.reject(
        new WorkerDiedError(`worker rank ${this.rank} (pid ${exit.pid}) ${how} before it was ready${tail}`, {
          data: { rank: this.rank, pid: exit.pid, exitCode: exit.exitCode, signal: exit.signal, silentMs: exit.silentMs },
        }),
      );
    }
    this.#state = "exited";
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) {
      p.cleanup();
      p.reject(this.#diedError(exit, p.method));
    }
  }

  #diedError(exit: WorkerExit, method: string): WorkerDiedError {
    return new WorkerDiedError(`worker rank ${this.rank} (pid ${exit.pid}) ${describeEnd(exit)} while "${method}" was pending`, {
      data: { rank: this.rank, pid: exit.pid, exitCode: exit.exitCode, signal: exit.signal, method, silentMs: exit.silentMs },
    });
  }
}

/** How a worker ended, for error messages: a missed heartbeat, a signal, or an exit code. */
export function describeEnd(exit: WorkerExit): string {
  if (exit.silentMs !== null) return `sent no heartbeat for ${exit.silentMs}ms and was killed (${exit.signal ?? "SIGKILL"})`;
  return exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.exitCode}`;
}
