/**
 * The PyTorch side of bench/pipeline.ts: training/tiny-shapes/sample_torch.py in `--serve` mode, driven over
 * JSON lines so PyTorch and onnxruntime runs can be interleaved in one benchmark run. While onnxruntime runs,
 * the Python process waits on stdin and uses no CPU.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

export const SAMPLE_TORCH_SCRIPT = fileURLToPath(new URL("../../training/tiny-shapes/sample_torch.py", import.meta.url));

export interface TorchMeta {
  torch: string;
  threads: number;
  torch_threads: number;
  ckpt: string;
  ckpt_step: number;
  unet_params: number;
  flops_per_row: { total: number; parts: Record<string, number> };
}

export interface TorchPeerOptions {
  python: string;
  ckpt: string;
  threads: number;
  modelDir: string;
  /** How long to wait for torch to import and the checkpoint to load, ms. */
  startTimeoutMs?: number;
}

export class TorchPeer {
  readonly meta: TorchMeta;
  readonly #child: ChildProcess;
  readonly #replies: ((line: string) => void)[] = [];
  readonly #stderr: string[];

  private constructor(child: ChildProcess, meta: TorchMeta, stderr: string[], lines: AsyncIterableIterator<string>) {
    this.#child = child;
    this.meta = meta;
    this.#stderr = stderr;
    void (async () => {
      for await (const line of lines) this.#replies.shift()?.(line);
    })();
  }

  /** Starts the peer; resolves `{ skipped }` when this machine has no usable Python, torch or checkpoint. */
  static async start(opts: TorchPeerOptions): Promise<TorchPeer | { skipped: string }> {
    if (!existsSync(opts.python)) return { skipped: `no ${opts.python}` };
    if (!existsSync(opts.ckpt)) return { skipped: `no checkpoint at ${opts.ckpt}` };
    const t = String(opts.threads);
    const child = spawn(opts.python, [SAMPLE_TORCH_SCRIPT, opts.ckpt, "--serve", "--threads", t, "--model-dir", opts.modelDir], {
      stdio: ["pipe", "pipe", "pipe"],
      // Same thread count for every BLAS/OpenMP pool torch may use as onnxruntime's intraOpNumThreads.
      env: { ...process.env, OMP_NUM_THREADS: t, OPENBLAS_NUM_THREADS: t, MKL_NUM_THREADS: t },
    });
    const stderr: string[] = [];
    child.stderr!.setEncoding("utf8").on("data", (d: string) => {
      stderr.push(d);
      if (stderr.length > 50) stderr.shift();
    });
    const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
    const exited = new Promise<string>((resolve) => {
      child.once("error", (e) => resolve(`cannot run ${opts.python}: ${e.message}`));
      child.once("exit", (code, sig) => resolve(`sample_torch.py exited (${sig ?? code}) before it was ready: ${stderr.join("").trim().slice(-1000)}`));
    });
    const ms = opts.startTimeoutMs ?? 300_000;
    let timer: NodeJS.Timeout | undefined;
    const first = await Promise.race([
      lines.next().then((r) => (r.done ? exited : r.value)),
      exited,
      new Promise<string>((resolve) => (timer = setTimeout(() => resolve(`sample_torch.py was not ready within ${ms} ms`), ms))),
    ]);
    clearTimeout(timer);
    let msg: Record<string, unknown> | null = null;
    try {
      msg = JSON.parse(first) as Record<string, unknown>;
    } catch {
      // not JSON: `first` is our own reason
    }
    if (msg?.ready) return new TorchPeer(child, msg as unknown as TorchMeta, stderr, lines);
    child.kill();
    return { skipped: typeof msg?.skipped === "string" ? msg.skipped : first };
  }

  async #call(msg: Record<string, unknown>): Promise<Record<string, unknown>> {
    const line = await new Promise<string>((resolve, reject) => {
      const onExit = () => reject(new Error(`sample_torch.py exited: ${this.#stderr.join("").trim().slice(-1000)}`));
      this.#child.once("exit", onExit);
      this.#replies.push((l) => {
        this.#child.off("exit", onExit);
        resolve(l);
      });
      this.#child.stdin!.write(JSON.stringify(msg) + "\n");
    });
    const reply = JSON.parse(line) as Record<string, unknown>;
    if (reply.error) throw new Error(`sample_torch.py: ${String(reply.error)}`);
    return reply;
  }

  /** Seconds of one guided sampling run of `batch` requests. */
  async sample(batch: number, steps: number, guidance: number): Promise<number> {
    return (await this.#call({ op: "sample", batch, steps, guidance })).seconds as number;
  }

  /** Seconds of each of `iters` UNet calls on `batch` rows. */
  async unet(batch: number, iters: number): Promise<number[]> {
    return (await this.#call({ op: "unet", batch, iters })).seconds as number[];
  }

  async close(): Promise<void> {
    if (this.#child.exitCode !== null) return;
    const exited = new Promise((r) => this.#child.once("exit", r));
    this.#child.stdin!.end(JSON.stringify({ op: "quit" }) + "\n");
    const t = setTimeout(() => this.#child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(t);
  }
}
