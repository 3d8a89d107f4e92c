/**
 * The quick-start's custom executor, in TypeScript and working.
 *
 * "Your system" here is a pipeline this executor loads itself, through the public API; a real one would
 * hold an HTTP/gRPC client instead (see examples/executors/ for those patterns).
 *
 * Run it, from the repository root:  npx tsx examples/example_custom_executor.ts
 */
import { fileURLToPath, pathToFileURL } from "node:url";
import {
  DiffusionEngine,
  DiffusionExecutor,
  DiffusionOutput,
  OmniDiffusionRequest,
  UnhealthyError,
  UnknownMethodError,
  ValidationError,
  loadPipeline,
  type CollectiveRpcOptions,
  type DiffusionPipeline,
  type ExecuteOptions,
} from "omni-diffusion";

export class MyExecutor extends DiffusionExecutor {
  #pipeline: DiffusionPipeline | null = null;

  /** Set up the connection to your system (here: load the model in this process). */
  protected async initExecutor(): Promise<void> {
    this.#pipeline = await loadPipeline(this.config.model, { intraOpNumThreads: this.config.intraOpNumThreads });
  }

  /** Forward an RPC to your system; return one reply per rank (here one rank), or rank k's alone. */
  async collectiveRpc(method: string, opts: CollectiveRpcOptions = {}): Promise<unknown> {
    this.assertOpen();
    // One rank here: any other uniqueReplyRank is the caller's mistake, not a reply of undefined.
    if (opts.uniqueReplyRank !== undefined && opts.uniqueReplyRank !== 0) {
      throw new ValidationError(`uniqueReplyRank must be 0 for MyExecutor (one rank), got ${opts.uniqueReplyRank}`, { field: "uniqueReplyRank" });
    }
    const pipeline = this.#pipeline!;
    let reply: unknown;
    switch (method) {
      case "ping":
        reply = { rank: 0, pid: process.pid, time: Date.now() };
        break;
      case "generate": {
        const requests = ((opts.args?.[0] as unknown[]) ?? []).map((d) => OmniDiffusionRequest.fromDict(d));
        reply = (await pipeline.generate(requests)).toDict();
        break;
      }
      case "getStats":
        reply = { rank: 0, model: pipeline.info };
        break;
      case "sleep":
        reply = await pipeline.release();
        break;
      case "wakeUp":
        reply = await pipeline.reload();
        break;
      default:
        throw new UnknownMethodError(`MyExecutor has no method "${method}"`, { data: { method } });
    }
    return opts.uniqueReplyRank === undefined ? [reply] : reply;
  }

  /** Optional: a specialised path that skips the dict round trip. Must return a DiffusionOutput or null. */
  override async executeModel(requests: OmniDiffusionRequest[], opts: ExecuteOptions = {}): Promise<DiffusionOutput | null> {
    this.assertOpen();
    return this.#pipeline!.generate(requests, { signal: opts.signal, onProgress: opts.onProgress });
  }

  /** Throw when your system is down. */
  async checkHealth(): Promise<void> {
    this.assertOpen(); // after close(): ClosedError, like every other call
    if (!this.#pipeline || this.#pipeline.info.asleep) throw new UnhealthyError("MyExecutor: pipeline not loaded");
  }

  /** Clean up. The base class calls this once, from close(). */
  protected async shutdown(): Promise<void> {
    await this.#pipeline?.release();
    this.#pipeline = null;
  }
}

async function main(): Promise<void> {
  // The string form, as a config file would give it: this file's path and the export's name.
  const engine = await DiffusionEngine.create({ numGpus: 1, executorClass: `${fileURLToPath(import.meta.url)}#MyExecutor` });
  try {
    const outputs = await engine.step([new OmniDiffusionRequest({ prompt: "a red circle on a blue background", seed: 42 })]);
    for (const out of outputs) {
      if (out.error) throw out.error;
      console.log(`${out.requestId}: ${out.images.length} image(s) ${out.images[0]!.width}x${out.images[0]!.height}, seed ${out.seed}`);
    }
  } finally {
    await engine.close();
  }
}

// Not a top-level await: the engine imports this very file by its string path, which must finish evaluating first.
if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
