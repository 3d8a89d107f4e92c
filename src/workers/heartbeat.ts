/**
 * Worker side of the heartbeat: a `worker_threads` thread that writes one byte to the heartbeat pipe
 * ({@link HEARTBEAT_FD}) every interval.
 *
 * Why a thread: onnxruntime's `session.run()` is synchronous and holds the worker's main thread for a
 * whole UNet call (seconds on big models), so beats sent from the main thread (or answers to pings)
 * would stop during normal work and a long step would look like a hang. The thread keeps beating while
 * the main thread computes; it stops only when the whole process stops being scheduled: SIGSTOP, a
 * frozen cgroup, a machine swapping to death, a kernel hang. A main thread stuck forever in JavaScript is
 * not a heartbeat matter: the call's own deadline (`rpcTimeoutMs`) bounds it and `checkHealth` names it.
 */
import { Worker } from "node:worker_threads";
import { HEARTBEAT_FD } from "../protocol/worker-ipc.js";

// CommonJS, evaluated in the thread. EAGAIN (a full pipe: the parent is slow to read) skips one beat;
// any other error means the parent end is gone, and the process is exiting anyway.
const THREAD_SOURCE = `
const { writeSync } = require("node:fs");
const { workerData } = require("node:worker_threads");
const beat = Buffer.from(".");
const timer = setInterval(() => {
  try {
    writeSync(workerData.fd, beat);
  } catch (err) {
    if (err.code !== "EAGAIN") clearInterval(timer);
  }
}, workerData.intervalMs);
`;

/** Starts beating every `intervalMs`; the thread never keeps the process alive. */
export function startHeartbeat(intervalMs: number): Worker {
  const thread = new Worker(THREAD_SOURCE, { eval: true, workerData: { fd: HEARTBEAT_FD, intervalMs } });
  thread.unref();
  return thread;
}
