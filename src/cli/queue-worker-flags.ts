import type { Command } from "commander";
import { assertPortsFree } from "../server/shared/port-check.js";
import { startQueueWorker } from "../server/queue/queue-worker.js";
import type { OmniDiffusionConfigInput } from "../core/config.js";
import { toOmniError } from "../errors/omni-error.js";
import { describeRedis, redisOptions } from "../protocol/queue-protocol.js";
import { intArg } from "./options.js";

/** The flags `omni-diffusion worker` takes in queue mode. */
export interface QueueWorkerFlags {
  queue?: string;
  queueName?: string;
  concurrency?: number;
  metricsPort?: number;
  lockMs?: number;
  stalledIntervalMs?: number;
  heartbeatMs?: number;
  drainTimeout?: number;
}

/** Adds the queue-mode flags to the `worker` command. */
export function addQueueWorkerFlags(cmd: Command): Command {
  return cmd
    .option("--queue <url>", "pull jobs from a Redis queue (redis://host:port/db) instead of serving HTTP/gRPC")
    .option("--queue-name <name>", "BullMQ queue name (default omni-diffusion)")
    .option("--concurrency <n>", "queue jobs run at once in this worker's engine (its batch capacity; default 4)", intArg(1, 1024))
    .option("--metrics-port <port>", "queue mode: serve /metrics and /health on this port (0 = any free port)", intArg(0, 65_535))
    .option("--lock-ms <ms>", "queue mode: job lock duration, renewed every half of it (default 10000)", intArg(1_000))
    .option("--stalled-interval-ms <ms>", "queue mode: how often stalled jobs are looked for (default 5000)", intArg(500))
    .option("--heartbeat-ms <ms>", "queue mode: heartbeat period (default 2000)", intArg(100))
    .option("--drain-timeout <ms>", "queue mode: how long SIGTERM lets held jobs finish before handing them back (default 30000)", intArg(0));
}

/**
 * Runs `omni-diffusion worker --queue`: prints `omni-diffusion worker ready: queue=<url> id=<id>[ metrics=<url>]`
 * once it pulls jobs (the URL without its password); SIGTERM/SIGINT stop pulling, drain held jobs, print one
 * `omni-diffusion worker stopped (<signal>): ...` line saying what the drain did, and exit 0.
 */
export async function runQueueWorker(flags: QueueWorkerFlags & { host?: string }, engine: OmniDiffusionConfigInput): Promise<void> {
  // Before the engine starts: a taken metrics port is one line naming it and its flag.
  if (flags.metricsPort !== undefined) await assertPortsFree([{ host: flags.host ?? "127.0.0.1", port: flags.metricsPort, flag: "--metrics-port" }]);
  const worker = await startQueueWorker({
    url: flags.queue!,
    queueName: flags.queueName,
    concurrency: flags.concurrency,
    metricsPort: flags.metricsPort,
    host: flags.host,
    lockMs: flags.lockMs,
    stalledIntervalMs: flags.stalledIntervalMs,
    heartbeatMs: flags.heartbeatMs,
    drainTimeoutMs: flags.drainTimeout,
    engine,
  });
  const where = `queue=${describeRedis(redisOptions(flags.queue!, { field: "--queue" }))} id=${worker.id}`;
  // One line when it leaves, saying what the drain did (operators otherwise saw the process just vanish).
  const stop = (signal: NodeJS.Signals) =>
    void worker.close().then(
      (s) => {
        console.log(`omni-diffusion worker stopped (${signal}): ${where} drained ${s.heldAtClose - s.handedBack} of ${s.heldAtClose} held jobs, handed back ${s.handedBack}; jobs since start: ${s.ok} ok, ${s.error} with an error`);
        process.exit(0);
      },
      (err: unknown) => {
        console.error(`omni-diffusion worker: shutdown failed: ${toOmniError(err).message}`);
        process.exit(1);
      },
    );
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  console.log(`omni-diffusion worker ready: ${where}${worker.metricsUrl ? ` metrics=${worker.metricsUrl}` : ""}`);
}
