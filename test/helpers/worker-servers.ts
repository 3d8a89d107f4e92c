/** Starting `omni-diffusion worker` servers for tests: in-process, or as a child process through the CLI. */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { startWorkerServer, type WorkerServer, type WorkerServerOptions } from "../../src/server/worker/worker-server.js";

const CLI = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));
const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** An in-process worker server with one worker process and one onnxruntime thread, ready to serve. */
export async function startTestWorker(opts: Omit<WorkerServerOptions, "engine"> & { engine?: WorkerServerOptions["engine"] } = {}): Promise<WorkerServer> {
  const server = await startWorkerServer({ ...opts, engine: { numGpus: 1, intraOpNumThreads: 1, allowNonNativeSizes: true, ...opts.engine } });
  try {
    await server.ready;
  } catch (err) {
    await server.close();
    throw err;
  }
  return server;
}

/** A worker server in its own process (`node --import tsx src/cli/main.ts worker ...`), for tests that kill it. */
export class ChildWorker {
  readonly child: ChildProcess;
  readonly httpUrl: string | undefined;
  readonly grpcAddress: string | undefined;
  readonly exited: Promise<unknown>;

  private constructor(child: ChildProcess, urls: Record<string, string>, exited: Promise<unknown>) {
    this.child = child;
    this.httpUrl = urls.http;
    this.grpcAddress = urls.grpc;
    this.exited = exited;
  }

  /** Spawns the CLI with `args` after `worker` and resolves once it prints its `ready` line (or rejects after `ms`). */
  static async start(args: string[], ms = 120_000): Promise<ChildWorker> {
    const child = spawn(process.execPath, ["--import", "tsx", CLI, "worker", "--workers", "1", "--threads", "1", "--no-log", ...args], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const exited = once(child, "exit");
    let out = "";
    let err = "";
    child.stderr!.on("data", (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
    const ready = new Promise<Record<string, string>>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`worker not ready within ${ms}ms; stderr: ${err}`)), ms);
      child.stdout!.on("data", (d: Buffer) => {
        out += d.toString();
        const line = /omni-diffusion worker ready: (.*)/.exec(out)?.[1];
        if (!line) return;
        clearTimeout(timer);
        resolve(Object.fromEntries(line.trim().split(/\s+/).map((kv) => kv.split("=", 2) as [string, string])));
      });
      void exited.then(() => {
        clearTimeout(timer);
        reject(new Error(`worker exited before it was ready; stderr: ${err}`));
      });
    });
    let urls: Record<string, string>;
    try {
      urls = await ready;
    } catch (err) {
      // Never leave a half-started worker behind: it would outlive the test and hold its pipes open.
      child.kill("SIGKILL");
      await exited;
      throw err;
    }
    return new ChildWorker(child, urls, exited);
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Sends `signal` and waits (at most `ms`) for the exit. */
  async stop(signal: NodeJS.Signals = "SIGTERM", ms = 15_000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill(signal);
    const t = setTimeout(() => this.child.kill("SIGKILL"), ms);
    await this.exited;
    clearTimeout(t);
  }
}
