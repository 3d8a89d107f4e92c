import { addModelFlags, type ModelFlags } from "./model-flags.js";
import type { Command } from "commander";
import { ConfigError } from "../errors/omni-error.js";
import { assertPortsFree, type PortClaim } from "../server/shared/port-check.js";
import { startWorkerServer, type WorkerServer } from "../server/worker/worker-server.js";
import type { Device } from "../pipelines/device.js";
import { ALLOW_NON_NATIVE_FLAG, addHttpLimitFlags, deviceOption, engineConfigFromFlags, spinThreadsOption, cpuArenaOption, previewVaeOption, previewDecoderOption, lorasDirOption, httpLimitsFromFlags, intArg, type HttpLimitFlags } from "./options.js";
import { addQueueWorkerFlags, runQueueWorker, type QueueWorkerFlags } from "./queue-worker-flags.js";

interface WorkerFlags extends HttpLimitFlags, QueueWorkerFlags, ModelFlags {
  workers?: number;
  threads?: number;
  spinThreads?: "on" | "off";
  device?: Device;
  executor?: string;
  allowNonNativeSizes?: boolean;
  host?: string;
  httpPort?: number;
  grpcPort?: number;
  sagemakerPort?: number;
  sagemakerHost?: string;
  sagemakerTrustNetwork?: boolean;
  apiKey?: string;
  bodyLimit?: number;
  log: boolean;
}

const DEFAULT_HTTP_PORT = 8000;
/** The port SageMaker sends `/ping` and `/invocations` to. */
const SAGEMAKER_PORT = 8080;

/**
 * `omni-diffusion worker`: serves a local executor to remote engines over HTTP/JSON, gRPC and the
 * SageMaker container contract. Prints one `listening` line, then one `ready` line once the model is
 * loaded (scripts and tests wait for it); exits 1 when the model cannot load. SIGTERM/SIGINT close it.
 */
export function addWorkerCommand(program: Command): void {
  const cmd = addModelFlags(program.command("worker"))
    .description("serve a local executor to remote engines (HTTP/JSON, gRPC, SageMaker /ping + /invocations)")
    .argument("[mode]", '"serve": SageMaker starts the image so; then the defaults are --sagemaker-port 8080 --host 0.0.0.0')
    .option("--workers <n>", "worker processes", intArg(1, 64))
    .option("--threads <n>", "onnxruntime threads per worker", intArg(1, 256))
    .addOption(spinThreadsOption())
    .addOption(cpuArenaOption())
    .addOption(previewVaeOption())
    .addOption(previewDecoderOption())
    .addOption(lorasDirOption())
    .addOption(deviceOption())
    .option("--executor <name>", "local executor: multiproc (default) or uniproc")
    .option("--host <host>", "interface to listen on (default 127.0.0.1)")
    .option("--http-port <port>", `HTTP/JSON API port (default ${DEFAULT_HTTP_PORT} when no port is given; 0 = any free port)`, intArg(0, 65_535))
    .option("--grpc-port <port>", "gRPC port", intArg(0, 65_535))
    .option("--sagemaker-port <port>", "SageMaker container port (SageMaker uses 8080)", intArg(0, 65_535))
    .option("--sagemaker-host <host>", 'interface of the SageMaker port (default 127.0.0.1; 0.0.0.0 in "serve" mode)')
    .option("--sagemaker-trust-network", "the SageMaker port needs no API key (SageMaker authenticates callers with IAM and does not forward Authorization)")
    .option("--api-key <key>", "require Authorization: Bearer <key> (default: $OMNI_DIFFUSION_API_KEY)")
    .option("--body-limit <bytes>", "largest HTTP request body and gRPC request message (default 4 MiB)", intArg(1_024, 1024 * 1024 * 1024))
    .option(...ALLOW_NON_NATIVE_FLAG)
    .option("--no-log", "do not log requests");
  addHttpLimitFlags(addQueueWorkerFlags(cmd)).action(async (mode: string | undefined, flags: WorkerFlags) => {
    if (mode !== undefined && mode !== "serve") throw new ConfigError(`unknown mode "${mode}" (the only one is "serve", for SageMaker)`);
    // --queue: pull jobs from Redis instead of serving HTTP/gRPC (docs/fleet.md).
    if (flags.queue) return runQueueWorker(flags, engineConfigFromFlags(flags));
    const sagemaker = mode === "serve";
    const none = flags.httpPort === undefined && flags.grpcPort === undefined && flags.sagemakerPort === undefined;
    const apiKey = flags.apiKey ?? (process.env.OMNI_DIFFUSION_API_KEY || undefined);
    const host = flags.host ?? (sagemaker ? "0.0.0.0" : "127.0.0.1");
    const sagemakerHost = flags.sagemakerHost ?? (sagemaker ? "0.0.0.0" : "127.0.0.1");
    const httpPort = none && !sagemaker ? DEFAULT_HTTP_PORT : flags.httpPort;
    const sagemakerPort = none && sagemaker ? SAGEMAKER_PORT : flags.sagemakerPort;
    // Before the worker processes start: a taken port is one line naming it and its flag.
    const claims: PortClaim[] = [];
    if (httpPort !== undefined) claims.push({ host, port: httpPort, flag: "--http-port" });
    if (flags.grpcPort !== undefined) claims.push({ host, port: flags.grpcPort, flag: "--grpc-port" });
    if (sagemakerPort !== undefined) claims.push({ host: sagemakerHost, port: sagemakerPort, flag: "--sagemaker-port" });
    await assertPortsFree(claims);
    const server = await startWorkerServer({
      engine: engineConfigFromFlags(flags),
      host,
      sagemakerHost,
      sagemakerTrustNetwork: flags.sagemakerTrustNetwork === true,
      httpPort,
      grpcPort: flags.grpcPort,
      sagemakerPort,
      apiKey,
      bodyLimitBytes: flags.bodyLimit,
      http: httpLimitsFromFlags(flags),
      // stdout carries only the worker's own plain lines (listening, ready) that scripts wait for; the JSON logs go to stderr.
      logger: flags.log ? { level: "info", stream: process.stderr } : false,
    });
    const where = endpoints(server);
    console.log(`omni-diffusion worker listening: ${where}`);
    for (const w of server.warnings) console.error(`omni-diffusion worker: warning: ${w}`);
    const stop = () => void server.close().finally(() => process.exit(0));
    process.once("SIGTERM", stop);
    process.once("SIGINT", stop);
    try {
      await server.ready;
    } catch (err) {
      await server.close();
      throw err;
    }
    console.log(`omni-diffusion worker ready: ${where}`);
  });
}

function endpoints(s: WorkerServer): string {
  return [s.httpUrl && `http=${s.httpUrl}`, s.grpcAddress && `grpc=${s.grpcAddress}`, s.sagemakerUrl && `sagemaker=${s.sagemakerUrl}`].filter(Boolean).join(" ");
}
