import { addModelFlags } from "./model-flags.js";
import { resolve } from "node:path";
import { InvalidArgumentError, Option, type Command } from "commander";
import { BATCHING_POLICIES } from "../core/config.js";
import { toOmniError } from "../errors/omni-error.js";
import { startServer } from "../server/omni-server.js";
import { assertPortsFree } from "../server/shared/port-check.js";
import { assertDataDirFree } from "../server/predictions/data-dir-lock.js";
import { webhookOptionsFromFlags } from "../server/predictions/webhooks/webhook-flags.js";
import { defaultDataDir, durationArg } from "./data-dir.js";
import { ALLOW_NON_NATIVE_FLAG, addHttpLimitFlags, deviceOption, engineConfigFromFlags, spinThreadsOption, cpuArenaOption, attentionSlicesOption, previewVaeOption, previewDecoderOption, lorasDirOption, httpLimitsFromFlags, intArg, jsonObjectArg, type EngineFlags, type HttpLimitFlags } from "./options.js";

interface ServeFlags extends EngineFlags, HttpLimitFlags {
  host: string;
  port: number;
  apiKey?: string;
  servedModelName?: string;
  maxBatch?: number;
  batching?: "continuous" | "request" | "none";
  maxBatchRows?: number;
  maxCallMs?: number | "auto" | "off";
  maxQueue?: number;
  batchWindowMs?: number;
  maxN?: number;
  maxSize?: { width: number; height: number };
  maxSteps?: number;
  maxBodyBytes?: number;
  maxUploadBytes?: number;
  shutdownTimeout: number;
  imageTtl?: number;
  publicUrl?: string;
  warmup?: boolean;
  ui: boolean;
  a1111: boolean;
  a1111SharedProgress?: boolean;
  predictions: boolean;
  workerExtension?: string;
  dataDir?: string;
  jobTtl?: number;
  webhookSecret?: string;
  allowPrivateWebhooks?: boolean;
  corsOrigin: string[];
  allowedHost: string[];
  logLevel: string;
}

/** A repeatable flag; each value may also list several, comma-separated. */
const collect = (v: string, prev: string[]) => [...prev, ...v.split(",").map((x) => x.trim()).filter(Boolean)];

function maxSizeArg(v: string): { width: number; height: number } {
  const n = Number(v);
  if (Number.isInteger(n) && n >= 8) return { width: n, height: n };
  const m = /^(\d+)x(\d+)$/i.exec(v.trim());
  if (!m) throw new InvalidArgumentError(`expected N or WIDTHxHEIGHT, got "${v}"`);
  return { width: Number(m[1]), height: Number(m[2]) };
}

function maxCallMsArg(v: string): number | "auto" | "off" {
  if (v === "auto" || v === "off") return v;
  const n = Number(v);
  if (!(n > 0 && n <= 3_600_000)) throw new InvalidArgumentError(`expected ms (0 < ms <= 3600000), "auto" or "off", got "${v}"`);
  return n;
}

/**
 * `omni-diffusion serve`: the OpenAI-compatible image server. Logs are pino JSON lines on stdout.
 * SIGTERM/SIGINT shut down gracefully (in-flight requests finish up to `--shutdown-timeout`); a second
 * signal exits at once, and the worker processes go with the process either way.
 */
export function addServeCommand(program: Command): void {
  const cmd = addModelFlags(program.command("serve"))
    .description("serve the OpenAI images API (POST /v1/images/generations and /edits, /v1/models, /health, /metrics) and the A1111 /sdapi/v1 API")
    .option("--host <host>", "interface to listen on", "127.0.0.1")
    .option("--port <port>", "port (0: any free port)", intArg(0, 65_535), 8000)
    .option("--served-model-name <id>", "model id clients use (default: the model folder's name)")
    .option("--executor <name>", "executor: a built-in name or module#Export")
    .option("--executor-options <json>", "executor options as JSON", jsonObjectArg)
    .option("--workers <n>", "worker processes", intArg(1, 64))
    .option("--threads <n>", "onnxruntime threads per worker", intArg(1, 256))
    .addOption(spinThreadsOption())
    .addOption(cpuArenaOption())
    .addOption(attentionSlicesOption())
    .addOption(previewVaeOption())
    .addOption(previewDecoderOption())
    .addOption(lorasDirOption())
    .addOption(deviceOption())
    .option("--api-key <key>", "require the key as 'Authorization: Bearer <key>' or as the HTTP Basic password (default: env OMNI_DIFFUSION_API_KEY)")
    .addOption(new Option("--batching <policy>", "continuous: requests join and leave between denoising steps; request: batch compatible requests, run each batch to completion; none: one at a time").choices(BATCHING_POLICIES))
    .option("--max-batch <n>", "most images per batch (continuous: in flight per worker)", intArg(1, 256))
    .option("--max-batch-rows <n>", "most UNet rows per UNet call (images, doubled under guidance)", intArg(1, 1024))
    .option("--max-call-ms <ms|auto|off>", "compute budget of one UNet call: ms, auto (learned per image size) or off (rows alone)", maxCallMsArg)
    .option("--max-queue <n>", "most requests waiting; more get 429", intArg(1))
    .option("--batch-window-ms <ms>", "how long the batcher waits for compatible requests", intArg(0, 10_000))
    .option("--max-n <n>", "most images per request", intArg(1, 10))
    .option("--max-size <WxH>", "largest image size (N or WIDTHxHEIGHT)", maxSizeArg)
    .option("--max-steps <n>", "most denoising steps per request", intArg(1, 10_000))
    .option("--max-body-bytes <n>", "largest request body; larger get 413", intArg(1_024))
    .option("--max-upload-bytes <n>", "largest uploaded image (edits) and A1111 txt2img/img2img body; larger get 413", intArg(1_024))
    .option("--shutdown-timeout <ms>", "how long SIGTERM lets in-flight requests finish", intArg(0), 30_000)
    .option("--image-ttl <ms>", "how long response_format=url images stay downloadable", intArg(1_000))
    .option("--public-url <url>", "base of response_format=url image URLs (default: relative /v1/images/files/<id>)")
    .option("--warmup", "run one tiny generation before accepting requests")
    .option("--no-ui", "do not serve the web playground at /")
    .option("--no-a1111", "do not serve the AUTOMATIC1111-compatible /sdapi/v1 routes")
    .option("--worker-extension <module#Export>", "a class each worker process loads with its RPC methods (engine config workerExtension)")
    .option("--no-predictions", "do not serve Replicate's predictions API (/v1/predictions)")
    .option("--data-dir <dir>", "where predictions and their images are kept, one serve per dir (default: env OMNI_DIFFUSION_DATA_DIR, else $XDG_DATA_HOME/omni-diffusion or ~/.local/share/omni-diffusion)")
    .option("--job-ttl <duration>", "delete completed predictions and their images after this long: 90s, 30m, 24h, 7d (default 24h)", durationArg)
    .option("--webhook-secret <whsec>", "sign prediction webhooks with this whsec_... secret (default: env OMNI_DIFFUSION_WEBHOOK_SECRET, else one kept in the data dir)")
    .option("--allow-private-webhooks", "deliver webhooks to loopback, private and link-local addresses too (off: refused, an SSRF guard)")
    .option("--a1111-shared-progress", "A1111 progress/interrupt act on every client's calls (A1111's behaviour), not only the caller's")
    .option("--cors-origin <origin>", "let pages on this origin (https://app.example.com; * for any, needs --api-key) call the API; other sites' POSTs get 403 (repeatable)", collect, [])
    .option("--allowed-host <name>", "without --api-key, also answer this Host name (.example.com: and its subdomains; *: any) besides IPs and localhost (repeatable)", collect, [])
    .option(...ALLOW_NON_NATIVE_FLAG)
    .option("--log-level <level>", "pino level: fatal, error, warn, info, debug, trace, silent", "info");
  addHttpLimitFlags(cmd).action(async (flags: ServeFlags) => {
    // Before any worker process starts: a taken port is one line, not a stack trace after a model load.
    await assertPortsFree([{ host: flags.host, port: flags.port, flag: "--port" }]);
    const dataDir = flags.predictions ? resolve(flags.dataDir ?? defaultDataDir()) : undefined;
    if (dataDir) assertDataDirFree(dataDir);
    // A malformed secret is one line naming the flag, before any worker process starts.
    const webhooks = webhookOptionsFromFlags({ webhookSecret: flags.webhookSecret ?? process.env.OMNI_DIFFUSION_WEBHOOK_SECRET, allowPrivateWebhooks: flags.allowPrivateWebhooks });
    const server = await startServer({
      host: flags.host,
      port: flags.port,
      apiKey: flags.apiKey ?? process.env.OMNI_DIFFUSION_API_KEY ?? null,
      servedModelName: flags.servedModelName,
      shutdownTimeoutMs: flags.shutdownTimeout,
      ui: flags.ui,
      a1111: flags.a1111,
      ...(flags.lorasDir ? { lorasDir: resolve(flags.lorasDir) } : {}),
      a1111SharedJobs: flags.a1111SharedProgress === true,
      predictions: flags.predictions,
      ...(dataDir ? { dataDir } : {}),
      ...(flags.jobTtl ? { jobTtlMs: flags.jobTtl } : {}),
      ...(webhooks.secret ? { webhookSecret: webhooks.secret } : {}),
      allowPrivateWebhooks: webhooks.allowPrivate,
      corsOrigins: flags.corsOrigin,
      allowedHosts: flags.allowedHost,
      ...(flags.imageTtl ? { imageTtlMs: flags.imageTtl } : {}),
      ...(flags.publicUrl ? { publicBaseUrl: flags.publicUrl } : {}),
      http: httpLimitsFromFlags(flags),
      limits: {
        ...(flags.maxN ? { maxN: flags.maxN } : {}),
        ...(flags.maxSize ? { maxWidth: flags.maxSize.width, maxHeight: flags.maxSize.height } : {}),
        ...(flags.maxSteps ? { maxSteps: flags.maxSteps } : {}),
        ...(flags.maxBodyBytes ? { maxBodyBytes: flags.maxBodyBytes } : {}),
        ...(flags.maxUploadBytes ? { maxUploadBytes: flags.maxUploadBytes } : {}),
      },
      engineConfig: {
        ...engineConfigFromFlags(flags),
        ...(flags.warmup ? { warmup: true } : {}),
        ...(flags.workerExtension ? { workerExtension: flags.workerExtension } : {}),
        ...(flags.batchWindowMs !== undefined ? { batchWindowMs: flags.batchWindowMs } : {}),
        ...(flags.batching ? { batching: flags.batching } : {}),
        ...(flags.maxBatchRows ? { maxBatchRows: flags.maxBatchRows } : {}),
        ...(flags.maxCallMs !== undefined ? { maxCallMs: flags.maxCallMs } : {}),
        limits: {
          ...(flags.maxBatch ? { maxBatchSize: flags.maxBatch } : {}),
          ...(flags.maxQueue ? { maxQueue: flags.maxQueue } : {}),
        },
      },
      logger: { level: flags.logLevel },
    });
    await new Promise<void>((resolve) => {
      let signals = 0;
      const onSignal = (signal: NodeJS.Signals) => {
        if (++signals > 1) {
          server.app.log.warn({ signal }, "second signal: exiting now");
          process.exit(130);
        }
        server.app.log.info({ signal }, "signal received");
        server.close().then(resolve, (err: unknown) => {
          server.app.log.error({ err: toOmniError(err) }, "shutdown failed");
          process.exitCode = 1;
          resolve();
        });
      };
      process.on("SIGTERM", onSignal);
      process.on("SIGINT", onSignal);
    });
  });
}
