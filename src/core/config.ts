import { availableParallelism, totalmem } from "node:os";
import { z } from "zod";
import { ConfigError } from "../errors/omni-error.js";
import { zodToConfigError } from "../utils/zod-error.js";
import { DEVICES } from "./devices.js";
import { PREVIEW_DECODERS } from "./decoders.js";
import { modelDisplayName, resolveModelSpec } from "./model-path.js";
import { buildModelMap } from "./model-catalog.js";
import { DEFAULT_REQUEST_LIMITS, type RequestLimits } from "./limits.js";
import { defaultWorkerCount, onnxFilesUnder, onnxWeightBytes, type WorkerCountChoice } from "./worker-count.js";

/** Resource limits every request is checked against before it is queued. */
export const limitsSchema = z
  .object({
    maxBatchSize: z.number().int().min(1).max(256).default(8),
    maxQueue: z.number().int().min(1).default(1024),
    /** Largest width/height; absent: derived from the model (core/limits.ts `maxSizeFor`). */
    maxWidth: z.number().int().min(8).optional(),
    maxHeight: z.number().int().min(8).optional(),
    maxSteps: z.number().int().min(1).default(DEFAULT_REQUEST_LIMITS.maxSteps),
    maxOutputsPerPrompt: z.number().int().min(1).default(DEFAULT_REQUEST_LIMITS.maxOutputsPerPrompt),
    /** Characters of `prompt` and of `negativePrompt`. */
    maxPromptChars: z.number().int().min(1).max(10_000).default(DEFAULT_REQUEST_LIMITS.maxPromptChars),
    /** Budget of one request's estimated peak UNet memory, bytes (core/limits.ts `estimateRequestBytes`). */
    maxRequestBytes: z.number().int().min(1).default(DEFAULT_REQUEST_LIMITS.maxRequestBytes),
  })
  .strict();

/**
 * How requests share denoising work:
 * - `continuous`: each worker keeps an active set of requests and runs one UNet call per step over all of
 *   them; requests join and leave between steps, so a short request never waits for a long one.
 * - `request`: the engine batches compatible requests (same size, steps, sampler, guidance on/off) and a
 *   worker runs each batch to completion.
 * - `none`: one request at a time per worker.
 */
/**
 * An executor class as the config holds it. Core sits below executors/, so it cannot name
 * DiffusionExecutor: any class is accepted here, and `resolveExecutor` checks that it extends
 * DiffusionExecutor (an ExecutorTypeError otherwise).
 */
export type ExecutorClassRef = abstract new (config: never) => object;

export const BATCHING_POLICIES = ["continuous", "request", "none"] as const;
export type BatchingPolicy = (typeof BATCHING_POLICIES)[number];

export const configSchema = z
  .object({
    /**
     * A folder in the diffusers ONNX layout, a built-in model name (`"tiny-shapes"`, the default) or a Hugging Face
     * model id (`owner/name[@revision]`) already pulled into the Hub cache; parsed into the folder's path.
     */
    model: z.string().min(1).default("tiny-shapes").transform(modelFolder),
    /**
     * More models the server serves (issue 24, docs/models.md#several-models-per-server): specs as `model` takes
     * them (each named by its folder, or `owner/name` for a pulled Hub id), or a name → folder map. Parsed into the
     * map of every known model, `model` and `modelsDir`'s included.
     */
    models: z.union([z.array(z.string().min(1)).max(256), z.record(z.string().min(1), z.string().min(1))]).optional(),
    /** A folder whose subfolders are models (each with a model_index.json; a Hub cache's pulled repos count). */
    modelsDir: z.string().min(1).optional(),
    /** The model a request without `model` runs; default: `model` when given, else the first of `models`. */
    defaultModel: z.string().min(1).optional(),
    /** Most pipelines a worker keeps loaded (model × LoRA set); the least recently used idle one is evicted first. */
    maxLoadedModels: z.number().int().min(1).max(1024).optional(),
    /**
     * Memory the loaded models of one worker may take, bytes (their estimated resident size, core/memory-estimate.ts).
     * Absent: the worker's share of the machine's memory; 0: unchecked.
     */
    maxModelMemory: z.number().int().min(0).optional(),
    /** Pipeline class; read from model_index.json's `_class_name` when absent. */
    modelClassName: z.string().min(1).optional(),
    /**
     * Number of worker ranks (on CPU: worker processes). Absent: for the local executor, as many as fit in memory
     * with the cores shared (core/worker-count.ts: one for an SD-size model on a machine under 16 cores); else 1.
     */
    numGpus: z.number().int().min(1).max(64).optional(),
    /** Set by parseConfig with a defaulted `numGpus` (why that count); kept when a parsed config is parsed again. */
    numGpusReason: z.string().nullable().optional(),
    /** Built-in name, "module#Export" path, or a DiffusionExecutor subclass. Absent → multi-process. */
    executorClass: z
      .union([z.string().min(1), z.custom<ExecutorClassRef>((v) => typeof v === "function")], {
        error: 'must be a built-in executor name, a "module#Export" string, or a DiffusionExecutor subclass',
      })
      .optional(),
    /** Options passed to the executor (remote endpoints, timeouts, ...). */
    executorOptions: z.record(z.string(), z.unknown()).default({}),
    /** Where the ONNX components run: `cpu`, or `cuda` (onnxruntime-node's CUDA execution provider; docs/models.md). */
    device: z.enum(DEVICES).default("cpu"),
    /** @deprecated The former name of `device`, still accepted; giving both with different values is an error. */
    executionProvider: z.enum(DEVICES).optional(),
    /** onnxruntime intra-op threads per worker; default splits the cores among workers. */
    intraOpNumThreads: z.number().int().min(1).max(256).optional(),
    /**
     * Whether onnxruntime's idle intra-op threads spin (busy-wait) for the next piece of work instead of
     * sleeping. Spinning shaves wake-ups off small calls on an idle machine; on a loaded one it burns the cores
     * the server's own process needs, and a preempted thread stalls its spinning partner. Default: off under
     * `continuous` batching (a loaded server: +30 % throughput measured, bench/batching.ts), on otherwise.
     */
    intraOpSpinning: z.boolean().optional(),
    /** Max time for one RPC / batch, ms. */
    rpcTimeoutMs: z.number().int().min(1).default(300_000),
    /** Worker start-up deadline (model load), ms. */
    workerStartTimeoutMs: z.number().int().min(1).default(60_000),
    /** How many times a request is retried on a restarted worker after its worker died. */
    maxWorkerRetries: z.number().int().min(0).max(10).default(1),
    /** Run one tiny generation at start-up so the first user request is not slowed by lazy init. */
    warmup: z.boolean().default(false),
    /** See {@link BATCHING_POLICIES}. Executors without step-level batching run `continuous` as `request`. */
    batching: z.enum(BATCHING_POLICIES).default("continuous"),
    /**
     * Most UNet rows (images, doubled under classifier-free guidance) per UNet call. Under `continuous` it
     * also caps a worker's active set: requests beyond it wait to join.
     */
    maxBatchRows: z.number().int().min(1).max(1024).default(32),
    /**
     * Compute budget of one UNet call under `continuous`: `"auto"` (per image size, the cost past which more
     * rows stop paying for themselves, from the UNet profile each worker learns from its own calls), a number
     * of ms for every size, or `"off"` (rows alone, the rule before budgets). See docs/batching.md.
     */
    maxCallMs: z.union([z.number().positive().max(3_600_000), z.enum(["auto", "off"])]).default("auto"),
    /** How long the batcher waits for more compatible requests before dispatching, ms. */
    batchWindowMs: z.number().min(0).max(10_000).default(2),
    /** Python-style worker extension: "module#Export" of a class whose methods become RPC methods. */
    workerExtension: z.string().min(1).optional(),
    /**
     * Serve sizes other than the model's native one on models whose export allows them. Off by default:
     * a model runs at sizes it was never trained at only when the operator opts in.
     */
    allowNonNativeSizes: z.boolean().default(false),
    /** A tiny VAE folder (AutoencoderTiny ONNX export) for previews and `vae: "tiny"` requests; default: the model's `tiny_vae/`. */
    tinyVae: z.string().min(1).optional(),
    /** The LoRA folder: each `*.safetensors` under it is a LoRA named by its file name (pipelines/lora/lora-catalog.ts). */
    lorasDir: z.string().min(1).optional(),
    /**
     * onnxruntime's CPU arena for the worker's sessions. Absent: on for small models, off for models over 256 MiB of
     * weights (the arena keeps every session's peak after its run: SD 1.5 at 512² peaks at 1.86× its weights with it,
     * 1.36-1.46× without, for +5-14 % UNet time and +35 % full-VAE decode time; docs/models.md#memory).
     */
    cpuMemArena: z.boolean().optional(),
    /**
     * Query-row slices each attention of the UNet and VAE decoder runs in (pipelines/onnx-graph/attention-slicing.ts):
     * the score matrices of one slice alive at a time. Absent: 16 for models over 256 MiB of weights, 1 (the graph
     * as exported) below; 1 turns it off.
     */
    attentionSlices: z.number().int().min(1).max(64).optional(),
    /** What decodes step previews (core/decoders.ts): `auto` (default) takes the cheapest the model has. */
    previewDecoder: z.enum(PREVIEW_DECODERS).default("auto"),
    limits: limitsSchema.default(limitsSchema.parse({})),
  })
  .strict();

/** `model` → its folder (see resolveModelSpec); a spec that names nothing becomes an issue of the `model` field. */
function modelFolder(spec: string, ctx: z.RefinementCtx): string {
  try {
    return resolveModelSpec(spec);
  } catch (err) {
    ctx.addIssue({ code: "custom", message: (err as Error).message });
    return z.NEVER;
  }
}

export type OmniDiffusionConfigInput = z.input<typeof configSchema>;
export type OmniDiffusionConfig = Omit<z.output<typeof configSchema>, "numGpus" | "numGpusReason" | "models" | "defaultModel"> & {
  /** Every model the server knows, name → folder (at least `model`, under its display name). */
  models: Record<string, string>;
  /** The name of `model` in `models`: what a request without `model` runs. */
  defaultModel: string;
  numGpus: number;
  /** Why `numGpus` has its value when the config left it out (logged once at start); null when the config set it. */
  numGpusReason: string | null;
  intraOpNumThreads: number;
  intraOpSpinning: boolean;
};

/** Validates a config object; throws one ConfigError naming each bad field. */
export function parseConfig(input: OmniDiffusionConfigInput = {}): OmniDiffusionConfig {
  const r = configSchema.safeParse(input ?? {});
  if (!r.success) throw zodToConfigError(r.error, "OmniDiffusionConfig");
  const { executionProvider, models: modelSpecs, defaultModel: defaultName, ...parsed } = r.data;
  const { models, defaultModel } = modelsOf(input ?? {}, parsed.model, modelSpecs, parsed.modelsDir, defaultName);
  const cfg = { ...parsed, model: models[defaultModel]! };
  if (executionProvider !== undefined) {
    if (input?.device !== undefined && input.device !== executionProvider) {
      throw new ConfigError(`invalid OmniDiffusionConfig: device "${input.device}" and executionProvider "${executionProvider}" disagree (executionProvider is the old name of device)`, {
        field: "device",
      });
    }
    cfg.device = executionProvider;
  }
  const chosen = cfg.numGpus === undefined ? defaultWorkers(cfg) : null;
  const numGpus = cfg.numGpus ?? chosen?.workers ?? 1;
  // workers × threads ≤ cores: onnxruntime's default of one thread per core per session oversubscribes.
  const threads = cfg.intraOpNumThreads ?? Math.max(1, Math.floor(availableParallelism() / numGpus));
  return { ...cfg, models, defaultModel, numGpus, numGpusReason: chosen ? chosen.reason : (cfg.numGpusReason ?? null), intraOpNumThreads: threads, intraOpSpinning: cfg.intraOpSpinning ?? cfg.batching !== "continuous" };
}

/**
 * The name → folder map of every model, and the default's name: `model` (when given, or when nothing else is)
 * first, then `models`, then `modelsDir`'s scan. Errors are ConfigErrors naming the field.
 */
function modelsOf(input: OmniDiffusionConfigInput, model: string, specs: z.output<typeof configSchema>["models"], modelsDir: string | undefined, defaultName: string | undefined): { models: Record<string, string>; defaultModel: string } {
  let more: Record<string, string>;
  try {
    more = buildModelMap(specs, modelsDir);
  } catch (err) {
    throw err instanceof ConfigError ? new ConfigError(`invalid OmniDiffusionConfig: ${err.message}`, { field: (err.data as { field?: string }).field, cause: err }) : err;
  }
  const models: Record<string, string> = {};
  // `model` joins the catalog when the config named it, or when it is the only model (the default tiny-shapes).
  if (input.model !== undefined || !Object.keys(more).length) {
    const named = Object.entries(more).find(([, dir]) => dir === model)?.[0];
    models[named ?? modelDisplayName(model)] = model;
  }
  for (const [name, dir] of Object.entries(more)) {
    if (Object.hasOwn(models, name) && models[name] !== dir) {
      throw new ConfigError(`invalid OmniDiffusionConfig: model "${name}" names both ${models[name]} and ${dir}`, { field: "models" });
    }
    models[name] = dir;
  }
  const names = Object.keys(models);
  if (!names.length) throw new ConfigError(`invalid OmniDiffusionConfig: modelsDir ${modelsDir} holds no model (no subfolder with a model_index.json)`, { field: "modelsDir" });
  const defaultModel = defaultName ?? names[0]!;
  if (!Object.hasOwn(models, defaultModel)) {
    throw new ConfigError(`invalid OmniDiffusionConfig: defaultModel "${defaultModel}" is not one of the models (${names.join(", ")})`, { field: "defaultModel" });
  }
  return { models, defaultModel };
}

/** The local executor's default worker count for the configured model; other executors' ranks default to 1. */
function defaultWorkers(cfg: z.output<typeof configSchema>): WorkerCountChoice | null {
  const local = cfg.executorClass === undefined || cfg.executorClass === "multiproc";
  if (!local) return null;
  const onnx = [...onnxFilesUnder(cfg.model), ...(cfg.tinyVae ? onnxFilesUnder(cfg.tinyVae) : [])];
  return defaultWorkerCount({ weightBytes: onnxWeightBytes(onnx), machineBytes: totalmem(), cores: availableParallelism(), device: cfg.device });
}

/** The per-request limits of a parsed config, as core/limits.ts checks them. */
export function requestLimitsOf(config: Pick<OmniDiffusionConfig, "limits" | "allowNonNativeSizes">): RequestLimits {
  const l = config.limits;
  return {
    maxWidth: l.maxWidth ?? null,
    maxHeight: l.maxHeight ?? null,
    maxSteps: l.maxSteps,
    maxOutputsPerPrompt: l.maxOutputsPerPrompt,
    maxPromptChars: l.maxPromptChars,
    allowNonNativeSizes: config.allowNonNativeSizes,
    maxRequestBytes: l.maxRequestBytes,
  };
}
