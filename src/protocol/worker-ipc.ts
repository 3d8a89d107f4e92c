/**
 * The typed IPC protocol between the multi-process executor (parent) and a worker process (child).
 *
 * This is the only module the two sides share: the worker entry imports it and the worker, never the
 * executor. Messages travel over Node's `child_process` IPC channel (`process.send` / `"message"`) as JSON;
 * typed arrays inside them (raw RGB images, Float32Array latents) are packed as base64 of their bytes
 * ({@link packBinary}) and unpacked into the same typed array on the other side: never PNG. Errors travel
 * as {@link SerializedError}; a `generate` call carries {@link OmniDiffusionRequestTransfer}s and answers a
 * {@link DiffusionOutputTransfer}.
 *
 * Why not `serialization: "advanced"` (structured clone, typed arrays as they are): measured on the RPC hot
 * path (bench/rpc.ts, 2 workers, steady state after its warm-up) it cost about 25 % more latency and CPU per
 * call than JSON (p50 ≈ 97–100 vs 73–82 µs, parent CPU ≈ 80 vs 58 µs per ping), while base64 of raw bytes
 * costs little next to a UNet step.
 */
import type { SerializedError } from "../errors/omni-error.js";
import type { OmniDiffusionRequestTransfer } from "../core/request.js";
import type { DiffusionOutputTransfer } from "../core/output.js";
import { BATCHING_POLICIES, type BatchingPolicy } from "../core/config.js";
import type { PipelineInfo } from "../core/pipeline-info.js";
import type { PipelineLoadOptions } from "../core/pipeline-load-options.js";
import type { StepBatchInfo, StepProgress } from "../core/progress.js";

/** Environment variable through which the parent hands a worker its {@link WorkerInit} (JSON). */
export const WORKER_INIT_ENV = "OMNI_DIFFUSION_WORKER_INIT";

/** Exit code of a worker whose pipeline failed to load (after it sent a `load-error`). */
export const EXIT_LOAD_FAILED = 3;

/** Exit code of a worker whose start-up parameters were unusable. */
export const EXIT_BAD_INIT = 4;

/**
 * File descriptor of the heartbeat pipe in a worker process (stdio slot 4; slot 3 is the IPC channel). The
 * worker's heartbeat thread writes one byte per beat; the parent reads it (see `workers/heartbeat.ts`).
 */
export const HEARTBEAT_FD = 4;

/** What a worker process needs to start: its rank, the model and how to load it. */
export interface WorkerInit {
  rank: number;
  modelDir: string;
  load: PipelineLoadOptions;
  /** `"module#Export"` of a class whose methods become RPC methods (vLLM's `worker_extension_cls`). */
  workerExtension?: string;
  /**
   * The step loop's admission rule: `continuous` (concurrent generate calls share UNet calls), `request` (one
   * call's requests together, the next call when they are done; the default) or `none` (one request at a time).
   */
  batching?: BatchingPolicy;
  /** Most UNet rows per call (and in the continuous active set). Default: the pipeline's own. */
  maxBatchRows?: number;
  /** Compute budget of one UNet call: ms, `"auto"` (the default) or `"off"` (see docs/batching.md). */
  maxCallMs?: number | "auto" | "off";
  /** Write a heartbeat to {@link HEARTBEAT_FD} this often, ms; absent or 0: no heartbeats. */
  heartbeatIntervalMs?: number;
  /** Every model this worker may serve, name → folder (issue 24); absent: only `modelDir`'s. */
  models?: Record<string, string>;
  /** The name of `modelDir`'s model in `models`: what a request without `model` runs. */
  defaultModel?: string;
  /** Most pipelines (model × LoRA set) loaded at once. */
  maxLoadedModels?: number;
  /** Budget of the loaded pipelines' estimated bytes; 0: unchecked. */
  maxModelMemory?: number;
  /** The folder of the LoRAs requests name (`--loras-dir`); absent: a request naming a LoRA is refused. */
  lorasDir?: string;
}

// ---- parent → worker ----

/** Calls `method` on the worker. `deadline` is an absolute `Date.now()` time after which the call is pointless. */
export interface RpcCallMessage {
  type: "call";
  id: number;
  method: string;
  /** Absent: none. */
  args?: unknown[];
  /** Absent: none. */
  kwargs?: Record<string, unknown>;
  deadline: number;
  /**
   * True when the caller wants step progress for this call. Absent: the worker sends none, as each
   * progress message costs both processes a wake-up (about 0.1 ms of CPU each on a small VM).
   */
  progress?: true;
}

/**
 * kwargs of a `generate` call in transfer form: `args[0]` is an array of {@link OmniDiffusionRequestTransfer}
 * (trusted: validated once in the parent), and the reply is a {@link DiffusionOutputTransfer}. Without
 * `transfer`, `generate` takes and answers the snake_case JSON dicts of docs/wire-protocol.md.
 */
export interface GenerateTransferKwargs {
  transfer: true;
  /** request id → preview interval in steps, for the requests that want previews. */
  previewEvery?: Record<string, number>;
}

/** Stops one request between denoising steps; it finishes with an AbortedError in `errors`. */
export interface AbortMessage {
  type: "abort";
  requestId: string;
}

/** Asks the worker to release its pipeline and exit 0. */
export interface ShutdownMessage {
  type: "shutdown";
}

/**
 * The messages the parent wrote in one turn of its event loop, in order, as one. A burst of calls (the
 * requests of one `engine.step`, a burst of clients) then reaches the worker at once and starts denoising
 * together, instead of the first running a step ahead of the rest.
 */
export interface BatchMessage {
  type: "batch";
  messages: ParentMessage[];
}

/** Every message a parent sends to a worker. */
export type ParentMessage = RpcCallMessage | AbortMessage | ShutdownMessage;

// ---- worker → parent ----

/** Sent once, after the pipeline loaded: the worker now answers calls. */
export interface ReadyMessage {
  type: "ready";
  rank: number;
  pid: number;
  info: PipelineInfo;
}

/** Sent instead of `ready` when the pipeline could not load; the worker then exits with {@link EXIT_LOAD_FAILED}. */
export interface LoadErrorMessage {
  type: "load-error";
  rank: number;
  pid: number;
  error: SerializedError;
}

/** The answer to one {@link RpcCallMessage}, matched by `id`. */
export type RpcReplyMessage =
  | { type: "reply"; id: number; ok: true; result: unknown }
  | { type: "reply"; id: number; ok: false; error: SerializedError };

/** One decoded preview image of a progress item: raw RGB (packed by {@link packBinary} on the channel). */
export interface PreviewImageTransfer {
  index: number;
  seed: number;
  width: number;
  height: number;
  data: Uint8Array;
}

/**
 * Step `step` of `totalSteps` of `requestId` finished, inside call `id`. `preview` carries the decoded
 * predicted images when the call asked for previews of this request at this step (`previewEvery`).
 */
export interface ProgressItem {
  id: number;
  requestId: string;
  step: number;
  totalSteps: number;
  preview?: PreviewImageTransfer[];
  /** The UNet call the step ran in. */
  batch?: StepBatchInfo;
}

/**
 * The progress of one step-loop iteration: every request that advanced, across every call sharing the
 * loop, in one message (the worker coalesces them), in the order they happened.
 */
export interface ProgressMessage {
  type: "progress";
  items: ProgressItem[];
}

/** Worker side: the transfer form of one progress event of call `id` (previews stay raw RGB). */
export function toProgressItem(id: number, p: StepProgress): ProgressItem {
  const item: ProgressItem = { id, requestId: p.requestId, step: p.step, totalSteps: p.totalSteps };
  if (p.batch) item.batch = p.batch;
  if (p.preview?.length) item.preview = p.preview.map((img) => ({ index: img.index, seed: img.seed, width: img.width, height: img.height, data: img.data }));
  return item;
}

/** Parent side: the {@link StepProgress} a progress item stands for. */
export function fromProgressItem(item: ProgressItem): StepProgress {
  const p: StepProgress = { requestId: item.requestId, step: item.step, totalSteps: item.totalSteps };
  if (item.batch) p.batch = item.batch;
  if (item.preview?.length) p.preview = item.preview.map((d) => ({ ...d, requestId: item.requestId }));
  return p;
}

const BYTES_TAG = "$omniBytes";

const isPlainObject = (v: object): v is Record<string, unknown> => {
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
};

/**
 * Makes a message JSON-safe without losing its typed arrays: every Uint8Array / Float32Array inside plain
 * objects and arrays becomes `{"$omniBytes": "u8" | "f32", "b64": ...}`. Anything else is left to JSON.
 */
export function packBinary(v: unknown): unknown {
  if (v === null || typeof v !== "object") return v;
  if (v instanceof Uint8Array || v instanceof Float32Array) {
    return { [BYTES_TAG]: v instanceof Float32Array ? "f32" : "u8", b64: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64") };
  }
  if (Array.isArray(v)) return v.map(packBinary);
  if (!isPlainObject(v)) return v;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(v)) out[k] = packBinary(v[k]);
  return out;
}

/** The inverse of {@link packBinary}: packed bytes become a Uint8Array / Float32Array again. */
export function unpackBinary(v: unknown): unknown {
  if (v === null || typeof v !== "object") return v;
  if (Array.isArray(v)) return v.map(unpackBinary);
  const o = v as Record<string, unknown>;
  const kind = o[BYTES_TAG];
  if ((kind === "u8" || kind === "f32") && typeof o.b64 === "string") {
    const bytes = Buffer.from(o.b64, "base64");
    if (kind === "u8") return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    // A fresh, aligned buffer: a Float32Array cannot start at an odd offset of the decode buffer.
    const f = new Float32Array(Math.floor(bytes.byteLength / 4));
    new Uint8Array(f.buffer).set(bytes.subarray(0, f.byteLength));
    return f;
  }
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(o)) out[k] = unpackBinary(o[k]);
  return out;
}

/** Every message a worker sends to its parent. */
export type WorkerMessage = ReadyMessage | LoadErrorMessage | RpcReplyMessage | ProgressMessage;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null;

const isPreviewImage = (v: unknown): v is PreviewImageTransfer =>
  isObject(v) &&
  typeof v.index === "number" &&
  typeof v.seed === "number" &&
  typeof v.width === "number" &&
  typeof v.height === "number" &&
  v.data instanceof Uint8Array &&
  v.data.length === v.width * v.height * 3;

const isStepBatchInfo = (v: unknown): v is StepBatchInfo =>
  isObject(v) && typeof v.rows === "number" && typeof v.requests === "number" && typeof v.ms === "number" && typeof v.primary === "boolean";

const isSerializedError = (v: unknown): v is SerializedError =>
  isObject(v) && typeof v.name === "string" && typeof v.code === "string" && typeof v.message === "string";

const isProgressItem = (v: unknown): v is ProgressItem =>
  isObject(v) &&
  typeof v.id === "number" &&
  typeof v.requestId === "string" &&
  typeof v.step === "number" &&
  typeof v.totalSteps === "number" &&
  (v.preview === undefined || (Array.isArray(v.preview) && v.preview.every(isPreviewImage))) &&
  (v.batch === undefined || isStepBatchInfo(v.batch));

/** Narrows an IPC payload received by the parent; anything else is a protocol violation. */
export function isWorkerMessage(msg: unknown): msg is WorkerMessage {
  if (!isObject(msg)) return false;
  switch (msg.type) {
    case "ready":
      return typeof msg.rank === "number" && typeof msg.pid === "number" && isObject(msg.info);
    case "load-error":
      return typeof msg.rank === "number" && isSerializedError(msg.error);
    case "reply":
      return typeof msg.id === "number" && (msg.ok === true || (msg.ok === false && isSerializedError(msg.error)));
    case "progress":
      return Array.isArray(msg.items) && msg.items.every(isProgressItem);
    default:
      return false;
  }
}

/** Narrows an IPC payload received by a worker: one message, or a {@link BatchMessage} of them. */
export function isParentEnvelope(msg: unknown): msg is ParentMessage | BatchMessage {
  if (isObject(msg) && msg.type === "batch") return Array.isArray(msg.messages) && msg.messages.every(isParentMessage);
  return isParentMessage(msg);
}

/** Narrows one parent message (not a batch). */
export function isParentMessage(msg: unknown): msg is ParentMessage {
  if (!isObject(msg)) return false;
  switch (msg.type) {
    case "call":
      return (
        typeof msg.id === "number" &&
        typeof msg.method === "string" &&
        (msg.args === undefined || Array.isArray(msg.args)) &&
        (msg.kwargs === undefined || isObject(msg.kwargs)) &&
        typeof msg.deadline === "number" &&
        (msg.progress === undefined || msg.progress === true)
      );
    case "abort":
      return typeof msg.requestId === "string";
    case "shutdown":
      return true;
    default:
      return false;
  }
}

/** Parses and checks the {@link WorkerInit} JSON the parent put in {@link WORKER_INIT_ENV}. Returns a reason string when unusable. */
export function parseWorkerInit(raw: string | undefined): WorkerInit | string {
  if (!raw) return `${WORKER_INIT_ENV} is not set: this module is started by the multi-process executor`;
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch (err) {
    return `${WORKER_INIT_ENV} is not JSON: ${(err as Error).message}`;
  }
  if (!isObject(v)) return `${WORKER_INIT_ENV} must be an object`;
  if (typeof v.rank !== "number" || !Number.isInteger(v.rank) || v.rank < 0) return `${WORKER_INIT_ENV}.rank must be an integer >= 0`;
  if (typeof v.modelDir !== "string" || !v.modelDir) return `${WORKER_INIT_ENV}.modelDir must be a non-empty string`;
  if (!isObject(v.load)) return `${WORKER_INIT_ENV}.load must be an object`;
  if (v.workerExtension !== undefined && typeof v.workerExtension !== "string") return `${WORKER_INIT_ENV}.workerExtension must be a string`;
  if (v.batching !== undefined && !(BATCHING_POLICIES as readonly unknown[]).includes(v.batching)) {
    return `${WORKER_INIT_ENV}.batching must be one of ${BATCHING_POLICIES.join(", ")}`;
  }
  if (v.maxBatchRows !== undefined && !(typeof v.maxBatchRows === "number" && Number.isInteger(v.maxBatchRows) && v.maxBatchRows >= 1)) {
    return `${WORKER_INIT_ENV}.maxBatchRows must be an integer >= 1`;
  }
  if (v.maxCallMs !== undefined && v.maxCallMs !== "auto" && v.maxCallMs !== "off" && !(typeof v.maxCallMs === "number" && v.maxCallMs > 0)) {
    return `${WORKER_INIT_ENV}.maxCallMs must be a number > 0, "auto" or "off"`;
  }
  if (v.heartbeatIntervalMs !== undefined && !(typeof v.heartbeatIntervalMs === "number" && Number.isFinite(v.heartbeatIntervalMs) && v.heartbeatIntervalMs >= 0)) {
    return `${WORKER_INIT_ENV}.heartbeatIntervalMs must be a number >= 0`;
  }
  if (v.models !== undefined && !(isObject(v.models) && Object.values(v.models).every((d) => typeof d === "string" && d))) {
    return `${WORKER_INIT_ENV}.models must map names to folders`;
  }
  if (v.defaultModel !== undefined && typeof v.defaultModel !== "string") return `${WORKER_INIT_ENV}.defaultModel must be a string`;
  if (v.lorasDir !== undefined && !(typeof v.lorasDir === "string" && v.lorasDir)) return `${WORKER_INIT_ENV}.lorasDir must be a folder path`;
  for (const k of ["maxLoadedModels", "maxModelMemory"] as const) {
    if (v[k] !== undefined && !(typeof v[k] === "number" && Number.isInteger(v[k]) && (v[k] as number) >= 0)) return `${WORKER_INIT_ENV}.${k} must be an integer >= 0`;
  }
  return v as unknown as WorkerInit;
}
