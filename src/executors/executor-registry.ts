import type { DiffusionExecutorClass } from "./base.js";

/** Imports an executor class on first use, so optional dependencies load only with their own backend. */
export type ExecutorLoader = () => Promise<DiffusionExecutorClass>;

const multiproc: ExecutorLoader = async () => (await import("./multiproc-executor.js")).MultiprocExecutor;
const queue: ExecutorLoader = async () => (await import("./queue-executor.js")).QueueDiffusionExecutor;
const uniproc: ExecutorLoader = async () => (await import("./uniproc-executor.js")).UniprocExecutor;

// Remote backends: each a lazy import of its own file, so grpc-js and the AWS SDK load only when used.
const registry = new Map<string, ExecutorLoader>([
  ["mp", multiproc],
  ["multiproc", multiproc],
  ["uniproc", uniproc],
  ["http", async () => (await import("./http-executor.js")).HttpDiffusionExecutor],
  ["grpc", async () => (await import("./grpc-executor.js")).GrpcDiffusionExecutor],
  ["sagemaker", async () => (await import("./sagemaker-executor.js")).SageMakerDiffusionExecutor],
  ["openai", async () => (await import("./openai-executor.js")).OpenAIImagesExecutor],
  ["queue", queue],
  ["bullmq", queue],
]);

/**
 * Makes `name` a built-in `executorClass` value. Names are case-insensitive; registering an existing name
 * replaces it.
 *
 * @example
 * ```ts
 * import { UniprocExecutor } from "./uniproc-executor.js";
 * registerExecutor("inproc", async () => UniprocExecutor);
 * ```
 */
export function registerExecutor(name: string, loader: ExecutorLoader): void {
  registry.set(name.toLowerCase(), loader);
}

/** Every registered executor name. */
export function registeredExecutors(): string[] {
  return [...registry.keys()];
}

/** The loader registered under `name` (case-insensitive), if any. */
export function executorLoader(name: string): ExecutorLoader | undefined {
  return registry.get(name.toLowerCase());
}
