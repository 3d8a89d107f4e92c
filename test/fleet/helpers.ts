/** Real Redis and real `omni-diffusion worker --queue` processes for the fleet tests. */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { rmSync } from "node:fs";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { tempDir } from "../helpers/temp-dir.js";

const CLI = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));
const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** Why the fleet tests cannot run here, or null when `redis-server` is installed. */
export function redisMissing(): string | null {
  const r = spawnSync("redis-server", ["--version"], { encoding: "utf8" });
  return r.error ? `redis-server is not installed (${r.error.message}); .ci/run installs it with apt-get (apt-get install -y redis-server)` : null;
}

/** Skips loudly (on stderr too, so a skipped fleet suite is seen in CI logs). */
export function skipWithoutRedis(t: { skip(msg: string): void }): boolean {
  const why = redisMissing();
  if (!why) return false;
  console.error(`SKIPPED fleet test: ${why}`);
  t.skip(why);
  return true;
}

/** A loopback port free right now (nobody listens on it once this returns). */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
  const port = (srv.address() as { port: number }).port;
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

/** A throwaway `redis-server` on a free loopback port, without persistence; stop and start it again on the same port. */
export class TestRedis {
  readonly port: number;
  readonly dir: string;
  /** Arguments after the defaults (e.g. `--requirepass`, as the deploy manifests set it). */
  readonly extraArgs: string[];
  /** The password clients need (from `--requirepass` in `extraArgs`), or undefined. */
  readonly password: string | undefined;
  #child: ChildProcess | null = null;

  private constructor(port: number, dir: string, extraArgs: string[]) {
    this.port = port;
    this.dir = dir;
    this.extraArgs = extraArgs;
    const i = extraArgs.indexOf("--requirepass");
    this.password = i >= 0 ? extraArgs[i + 1] : undefined;
  }

  static async start(extraArgs: string[] = []): Promise<TestRedis> {
    const r = new TestRedis(await freePort(), tempDir("omni-redis-"), extraArgs);
    await r.startAgain();
    return r;
  }

  /** `redis://[:password@]127.0.0.1:port/0`, with the password when the server requires one. */
  get url(): string {
    return `redis://${this.password ? `:${encodeURIComponent(this.password)}@` : ""}127.0.0.1:${this.port}/0`;
  }

  /** Starts the server (again) and resolves once it accepts connections. */
  async startAgain(): Promise<void> {
    const args = ["--port", String(this.port), "--bind", "127.0.0.1", "--dir", this.dir, "--save", "", "--appendonly", "no", ...this.extraArgs];
    const child = spawn("redis-server", args, { stdio: ["ignore", "pipe", "pipe"] });
    this.#child = child;
    let out = "";
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`redis-server did not start: ${out}`)), 30_000);
      child.stdout!.on("data", (d: Buffer) => {
        out += d.toString();
        if (out.includes("Ready to accept connections")) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`redis-server exited with ${code}: ${out}`));
      });
    });
  }

  /** Stops the server (SIGKILL: as if the machine went away) and waits for it to exit. */
  async stop(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    const c = this.#child;
    this.#child = null;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = once(c, "exit");
    c.kill(signal);
    await exited;
  }

  async close(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Fast lock, stall and heartbeat settings so a killed worker's jobs come back within a few seconds. */
export const FAST_QUEUE_FLAGS = ["--lock-ms", "2000", "--stalled-interval-ms", "1000", "--heartbeat-ms", "500"];

/** `omni-diffusion worker --queue ...` in its own process (uniproc engine, one thread: the machine has 2 shared cores). */
export class QueueWorkerChild {
  readonly child: ChildProcess;
  readonly id: string;
  readonly exited: Promise<unknown>;
  /** The `omni-diffusion worker ready: ...` line. */
  readonly readyLine: string;
  #log: { out: string; stdout: string };

  private constructor(child: ChildProcess, readyLine: string, exited: Promise<unknown>, log: { out: string; stdout: string }) {
    this.child = child;
    this.readyLine = readyLine;
    this.id = /\bid=(\S+)/.exec(readyLine)![1]!;
    this.exited = exited;
    this.#log = log;
  }

  static async start(url: string, queueName: string, extra: string[] = []): Promise<QueueWorkerChild> {
    const args = ["--import", "tsx", CLI, "worker", "--queue", url, "--queue-name", queueName, "--executor", "uniproc", "--threads", "1", "--allow-non-native-sizes", ...FAST_QUEUE_FLAGS, ...extra];
    const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    const exited = once(child, "exit");
    const log = { out: "", stdout: "" };
    child.stderr!.on("data", (d: Buffer) => (log.out = (log.out + d.toString()).slice(-4000)));
    child.stdout!.on("data", (d: Buffer) => (log.stdout = (log.stdout + d.toString()).slice(-4000)));
    const line = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`queue worker not ready; stderr: ${log.out}`)), 120_000);
      child.stdout!.on("data", () => {
        const m = /omni-diffusion worker ready: .*\bid=\S+.*/.exec(log.stdout);
        if (m) {
          clearTimeout(timer);
          resolve(m[0]);
        }
      });
      void exited.then(() => {
        clearTimeout(timer);
        reject(new Error(`queue worker exited before it was ready; stderr: ${log.out}`));
      });
    }).catch(async (err: unknown) => {
      child.kill("SIGKILL");
      await exited;
      throw err;
    });
    return new QueueWorkerChild(child, line, exited, log);
  }

  get pid(): number {
    return this.child.pid!;
  }

  get stderr(): string {
    return this.#log.out;
  }

  /** What it printed on stdout (the last 4,000 characters). */
  get stdout(): string {
    return this.#log.stdout;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Sends `signal` and waits for the exit (SIGKILL after `ms` as a hang guard); the exit code and signal. */
  async stop(signal: NodeJS.Signals = "SIGTERM", ms = 60_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.running) {
      this.child.kill(signal);
      const t = setTimeout(() => this.child.kill("SIGKILL"), ms);
      await this.exited;
      clearTimeout(t);
    }
    return { code: this.child.exitCode, signal: this.child.signalCode };
  }
}

/** A queue name of its own per test, so tests sharing a Redis never see each other's jobs. */
export function uniqueQueue(tag: string): string {
  return `test-${tag}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
}
