/**
 * Entry point of a worker process, started by the multi-process executor with `child_process.fork`.
 *
 * Reads its {@link WorkerInit} from the environment, loads the pipeline, then sends `ready` (or a
 * `load-error` and exits non-zero). Afterwards it answers `call` messages, honours `abort` between
 * denoising steps, and exits on `shutdown` or as soon as the parent disconnects (a parent killed with
 * SIGKILL leaves no orphan). A heartbeat thread proves the process is alive even while a UNet call holds
 * the main thread (`heartbeat.ts`). Imports only the protocol module and the worker, never the executor.
 */
import { inspect } from "node:util";
import { serializeError, toOmniError } from "../errors/omni-error.js";
import { DiffusionWorker } from "./diffusion-worker.js";
import { startHeartbeat } from "./heartbeat.js";
import type { StepProgress } from "../core/progress.js";
import {
  EXIT_BAD_INIT,
  EXIT_LOAD_FAILED,
  WORKER_INIT_ENV,
  isParentEnvelope,
  packBinary,
  unpackBinary,
  parseWorkerInit,
  toProgressItem,
  type ParentMessage,
  type ProgressItem,
  type RpcCallMessage,
  type WorkerMessage,
} from "../protocol/worker-ipc.js";

let unsent = 0;
let onAllSent: (() => void) | null = null;

/**
 * Progress items not yet sent. A step-loop iteration reports every request that advanced in one
 * synchronous burst; they leave together in one message on the next turn of the event loop (while the
 * next UNet call runs), instead of one message per request per step.
 */
let progress: ProgressItem[] = [];
let flushQueued = false;

function queueProgress(item: ProgressItem): void {
  progress.push(item);
  if (flushQueued) return;
  flushQueued = true;
  setImmediate(flushProgress);
}

function flushProgress(): void {
  flushQueued = false;
  if (!progress.length) return;
  const items = progress;
  progress = [];
  send({ type: "progress", items });
}

/** Sends a message; a closed channel means the parent is gone, so the worker exits. */
function send(msg: WorkerMessage, then?: () => void): void {
  // A call's progress must reach the parent before its reply (the channel keeps order).
  if (msg.type === "reply" && progress.length) flushProgress();
  if (!process.connected || !process.send) {
    process.exit(0);
  }
  try {
    unsent++;
    process.send(packBinary(msg), undefined, {}, (err) => {
      unsent--;
      if (err && !process.connected) process.exit(0);
      then?.();
      if (unsent === 0) onAllSent?.();
    });
  } catch (err) {
    unsent--;
    // A reply that cannot be serialised (a BigInt, a cycle) must still answer the caller.
    if (msg.type === "reply" && msg.ok) {
      send({ type: "reply", id: msg.id, ok: false, error: serializeError(toOmniError(err)) }, then);
    } else {
      process.stderr.write(`omni-diffusion worker: cannot send ${msg.type}: ${(err as Error).message}\n`);
      then?.();
    }
  }
}

const isThenable = (v: unknown): v is PromiseLike<unknown> => typeof (v as PromiseLike<unknown> | null)?.then === "function";

async function main(): Promise<void> {
  if (!process.send) {
    process.stderr.write("omni-diffusion worker: no IPC channel; start this file with child_process.fork\n");
    process.exit(EXIT_BAD_INIT);
  }
  // The parent owns our lifetime: when it dies or closes the channel, stop at once.
  process.on("disconnect", () => process.exit(0));

  const init = parseWorkerInit(process.env[WORKER_INIT_ENV]);
  if (typeof init === "string") {
    process.stderr.write(`omni-diffusion worker: ${init}\n`);
    process.exit(EXIT_BAD_INIT);
  }

  // Beats start before the model loads, so a worker stopped while loading is noticed too.
  if (init.heartbeatIntervalMs) startHeartbeat(init.heartbeatIntervalMs);

  let worker: DiffusionWorker;
  try {
    worker = await DiffusionWorker.create(init);
  } catch (err) {
    const error = serializeError(err);
    send({ type: "load-error", rank: init.rank, pid: process.pid, error }, () => process.exit(EXIT_LOAD_FAILED));
    return;
  }

  let shuttingDown = false;
  const reply = (id: number, result: unknown) => send({ type: "reply", id, ok: true, result: result === undefined ? null : result });
  const fail = (id: number, err: unknown) => send({ type: "reply", id, ok: false, error: serializeError(err) });
  // Synchronous methods (ping, getStats) are answered inside this message's turn, with no promise in between.
  const onCall = (msg: RpcCallMessage) => {
    let result: unknown;
    try {
      const args = msg.args ? (unpackBinary(msg.args) as unknown[]) : [];
      const kwargs = msg.kwargs ? (unpackBinary(msg.kwargs) as Record<string, unknown>) : {};
      const onProgress = msg.progress ? (p: StepProgress) => queueProgress(toProgressItem(msg.id, p)) : undefined;
      result = worker.dispatch(msg.method, args, kwargs, { deadline: msg.deadline, onProgress });
    } catch (err) {
      return fail(msg.id, err);
    }
    if (isThenable(result)) result.then((v: unknown) => reply(msg.id, v), (err: unknown) => fail(msg.id, err));
    else reply(msg.id, result);
  };

  // Only a call's args and kwargs can hold packed bytes (packBinary): the rest is read as it came.
  const onMessage = (msg: ParentMessage) => {
    switch (msg.type) {
      case "call":
        onCall(msg);
        break;
      case "abort":
        worker.abort(msg.requestId);
        break;
      case "shutdown":
        if (shuttingDown) return;
        shuttingDown = true;
        worker
          .close()
          // close() waited for the running generate; its reply is queued and must reach the parent first.
          .then(() => (unsent === 0 ? undefined : new Promise<void>((r) => (onAllSent = r))))
          .then(
            () => process.exit(0),
            (err: unknown) => {
              process.stderr.write(`omni-diffusion worker rank ${init.rank}: close failed: ${toOmniError(err).message}\n`);
              process.exit(1);
            },
          );
        break;
    }
  };
  process.on("message", (msg: unknown) => {
    if (!isParentEnvelope(msg)) {
      process.stderr.write(`omni-diffusion worker rank ${init.rank}: ignoring malformed message ${inspect(msg, { depth: 2, breakLength: Infinity }).slice(0, 200)}\n`);
      return;
    }
    if (msg.type === "batch") msg.messages.forEach(onMessage);
    else onMessage(msg);
  });

  send({ type: "ready", rank: init.rank, pid: process.pid, info: worker.pipeline.info });
}

main().catch((err: unknown) => {
  process.stderr.write(`omni-diffusion worker: fatal: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
});
