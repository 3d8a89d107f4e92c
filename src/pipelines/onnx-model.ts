import { readFileSync, statSync } from "node:fs";
import { dirname } from "node:path";
import * as ort from "onnxruntime-node";
import { BIG_MODEL_WEIGHT_BYTES } from "../core/worker-count.js";
import { ModelLoadError } from "../errors/omni-error.js";
import { deviceStartError, executionProviders, prepareDevice, type Device } from "./device.js";
import { float32ToHalf, halfToFloat32 } from "./float16.js";
import { sliceAttention } from "./onnx-graph/attention-slicing.js";
import { externalizeInlineWeights } from "./onnx-graph/external-weights.js";
import { PlacementReport } from "./webgpu-placement.js";
import type { MemoryTuning } from "../core/pipeline-load-options.js";

// The settings type lives in core (the worker IPC carries it); the defaults and their rules stay here.
export type { MemoryTuning } from "../core/pipeline-load-options.js";

export type OnnxDType = "float32" | "float16" | "int64" | "int32" | "string" | "other";

/** Input/output description read from the session, not assumed (timestep is int64 in some exports). */
export interface OnnxIO {
  name: string;
  type: OnnxDType;
  shape: (number | string)[];
}

export interface SessionOptions {
  /** Where the sessions run (default `cpu`); `cuda` is checked before any session is created. */
  device?: Device;
  intraOpNumThreads?: number;
  /** onnxruntime's `session.intra_op.allow_spinning`; absent: its default (on). */
  intraOpSpinning?: boolean;
  /** Memory-related session settings; absent fields take {@link DEFAULT_MEMORY_TUNING}. */
  memory?: Partial<MemoryTuning>;
  /** webgpu: `gpu-buffer` leaves the outputs in device memory (read them through DeviceTensors). */
  outputLocation?: "cpu" | "gpu-buffer";
  /** Rewrites of a component's graph bytes before its session is created, by component (LoRA fusing: lora/fuse-loras.ts). */
  graphEdits?: Readonly<Partial<Record<string, (graph: Uint8Array) => Promise<Uint8Array>>>>;
  /** Resident bytes the graph edits add beyond the model's files (fused LoRA weights held inline), for its memory figures. */
  graphEditBytes?: number;
}

/** onnxruntime's own defaults; the pipeline turns the arena off for big models ({@link memoryTuningFor}). */
export const DEFAULT_MEMORY_TUNING: Readonly<MemoryTuning> = { cpuMemArena: true, memPattern: true, prepacking: true, attentionSlices: 1, mapInlineWeights: false, vaeSlicing: false };

/** Attention slices for big models: SD 1.5's 512² self-attention scores go from 1 GiB per row to 64 MiB. */
export const BIG_MODEL_ATTENTION_SLICES = 16;

/** Components whose attention is sliced (the text encoder's is 77 tokens wide: nothing to gain). */
const SLICED_COMPONENTS = new Set(["unet", "vae_decoder"]);

/** Graph files above this carry their weights inline: rewritten only through {@link externalizeInlineWeights}, never read whole. */
const MAX_GRAPH_BYTES = 64 * 1024 ** 2;

/** Weights from which a model counts as big: its sessions run without the arena. */
export const ARENA_MAX_WEIGHT_BYTES = BIG_MODEL_WEIGHT_BYTES;

/**
 * The settings for a model of `weightBytes`: without the arena for big ones. Each session's arena keeps its own
 * peak after a run, so a worker held the UNet's and the VAE decoder's peaks at once (SD 1.5 at 512²: +2 GiB,
 * peak RSS 1.86× the weights, against 1.36-1.46× without; bench/realscale.ts); small models keep it (their buffers
 * are kilobytes and a step allocates many). Pre-packing and the pattern planner stay on: measured, neither
 * lowers the peak (packed copies replace the originals; the planner's block is the activations' own).
 */
export function memoryTuningFor(weightBytes: number, override: Partial<MemoryTuning> = {}): MemoryTuning {
  const big = weightBytes >= ARENA_MAX_WEIGHT_BYTES;
  return { ...DEFAULT_MEMORY_TUNING, cpuMemArena: !big, attentionSlices: big ? BIG_MODEL_ATTENTION_SLICES : 1, mapInlineWeights: big, vaeSlicing: big, ...override };
}

/**
 * One ONNX component (text encoder, UNet, VAE decoder) on one onnxruntime session, with its input and
 * output names and dtypes read from the session. The session is created lazily and can be released (sleep).
 */
export class OnnxModel {
  readonly component: string;
  readonly path: string;
  readonly #opts: SessionOptions;
  #session: ort.InferenceSession | null = null;
  /** A WebGPU session's first run is profiled to log which nodes fell back to the CPU (once per model). */
  #placement: PlacementReport | null = null;
  inputs: OnnxIO[] = [];
  outputs: OnnxIO[] = [];
  /** Attention blocks the loaded graph had sliced (0: loaded as exported). */
  slicedAttention = 0;

  constructor(component: string, path: string, opts: SessionOptions) {
    this.component = component;
    this.path = path;
    this.#opts = opts;
  }

  get loaded(): boolean {
    return this.#session !== null;
  }

  async load(): Promise<void> {
    if (this.#session) return;
    const device = this.#opts.device ?? "cpu";
    await prepareDevice(device);
    const mem = { ...DEFAULT_MEMORY_TUNING, ...this.#opts.memory };
    const session: Record<string, unknown> = {};
    if (this.#opts.intraOpSpinning !== undefined) session.intra_op = { allow_spinning: this.#opts.intraOpSpinning ? "1" : "0" };
    if (!mem.prepacking) session.disable_prepacking = "1";
    let graph: { bytes: Uint8Array; sliced: number } | null = null;
    try {
      graph = await this.#rewrittenGraph(mem);
      // A rewritten graph is handed over as bytes; its external weights are still read from the export's folder.
      if (graph) session.model_external_initializers_file_folder_path = dirname(this.path);
      const options: ort.InferenceSession.SessionOptions = {
        executionProviders: executionProviders(device),
        intraOpNumThreads: this.#opts.intraOpNumThreads,
        interOpNumThreads: 1,
        graphOptimizationLevel: "all",
        enableCpuMemArena: mem.cpuMemArena,
        enableMemPattern: mem.memPattern,
        ...(Object.keys(session).length ? { extra: { session } } : {}),
      };
      // onnxruntime's own placement warning says only "some nodes" and "rerun verbose": the report names them instead.
      if (device === "webgpu") Object.assign(options, { logSeverityLevel: 3 });
      if (device === "webgpu" && this.#opts.outputLocation) options.preferredOutputLocation = this.#opts.outputLocation;
      if (device === "webgpu") this.#placement = PlacementReport.for(this.component, this.path);
      if (this.#placement) Object.assign(options, this.#placement.sessionOptions);
      this.#session = graph ? await ort.InferenceSession.create(graph.bytes, options) : await ort.InferenceSession.create(this.path, options);
    } catch (err) {
      this.#placement?.discard();
      this.#placement = null;
      const deviceErr = deviceStartError(device, err);
      if (deviceErr) throw deviceErr;
      throw new ModelLoadError(`cannot load ${this.component} from ${this.path}: ${(err as Error).message}`, {
        cause: err,
        data: { component: this.component, path: this.path },
      });
    }
    const describe = (m: ort.InferenceSession.ValueMetadata): OnnxIO =>
      m.isTensor ? { name: m.name, type: normalizeType(String(m.type)), shape: [...m.shape] } : { name: m.name, type: "other", shape: [] };
    this.slicedAttention = graph?.sliced ?? 0;
    this.inputs = this.#session.inputMetadata.map(describe);
    this.outputs = this.#session.outputMetadata.map(describe);
  }

  /**
   * The graph to load when it differs from the file: inline weights turned into references to the file's own
   * bytes (`mapInlineWeights`), attention sliced (`attentionSlices`, UNet and VAE decoder). Null: load the file.
   */
  async #rewrittenGraph(mem: MemoryTuning): Promise<{ bytes: Uint8Array; sliced: number } | null> {
    let size: number;
    try {
      size = statSync(this.path).size;
    } catch {
      return null; // the create call reports the missing file
    }
    const inline = size > MAX_GRAPH_BYTES;
    const slices = SLICED_COMPONENTS.has(this.component) ? mem.attentionSlices : 1;
    const edit = this.#opts.graphEdits?.[this.component];
    if (inline && !mem.mapInlineWeights && !edit) return null;
    if (!inline && slices < 2 && !edit) return null;
    let original = inline ? externalizeInlineWeights(this.path) : readFileSync(this.path);
    if (!original && !edit) return null;
    // An edited graph is always handed over as bytes (an inline file with nothing to externalize is read whole).
    original = edit ? await edit(original ?? readFileSync(this.path)) : original!;
    const sliced = sliceAttention(original, slices);
    return sliced ?? (inline || edit ? { bytes: original, sliced: 0 } : null);
  }

  async release(): Promise<void> {
    const s = this.#session;
    this.#session = null;
    this.#placement?.discard();
    this.#placement = null;
    await s?.release();
  }

  input(name: string): OnnxIO | undefined {
    return this.inputs.find((i) => i.name === name);
  }

  /** Throws a ModelLoadError when one of `names` is not an input of this model. */
  requireInputs(names: string[]): void {
    const missing = names.filter((n) => !this.input(n));
    if (missing.length) {
      throw new ModelLoadError(
        `${this.component} (${this.path}) lacks input(s) ${missing.join(", ")}; it has ${this.inputs.map((i) => i.name).join(", ") || "none"}`,
        { data: { component: this.component, missing, found: this.inputs.map((i) => i.name) } },
      );
    }
  }

  async run(feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>> {
    if (!this.#session) await this.load();
    const session = this.#session!;
    const out = (await session.run(feeds)) as Record<string, ort.Tensor>;
    const placement = this.#placement;
    this.#placement = null;
    placement?.finish(session);
    return out;
  }
}

function normalizeType(t: string): OnnxDType {
  switch (t) {
    case "float32":
    case "float16":
    case "int64":
    case "int32":
    case "string":
      return t;
    default:
      return "other";
  }
}

/** Builds an integer tensor in the dtype the model declares (int64 or int32). */
export function intTensor(type: OnnxDType, values: ArrayLike<number>, dims: number[]): ort.Tensor {
  if (type === "int32") return new ort.Tensor("int32", Int32Array.from(values), dims);
  return new ort.Tensor("int64", BigInt64Array.from(Array.from(values, (v) => BigInt(Math.round(v)))), dims);
}

/**
 * A numeric (timestep) tensor of the declared dtype. Integer exports get the value truncated toward zero, as diffusers'
 * `np.array([t], dtype=timestep_dtype)` does (fractional Euler timesteps included).
 */
export function numericTensor(type: OnnxDType, values: ArrayLike<number>, dims: number[]): ort.Tensor {
  if (type === "int64" || type === "int32") return intTensor(type, Array.from(values, Math.trunc), dims);
  return floatTensor(type, Float32Array.from(values), dims);
}

/** A float tensor in the dtype the model declares: float16 inputs are converted here, at the boundary. */
export function floatTensor(type: OnnxDType, data: Float32Array, dims: number[]): ort.Tensor {
  if (type === "float16") return new ort.Tensor("float16", float32ToHalf(data), dims);
  return new ort.Tensor("float32", data, dims);
}

/** Float32 data of an output tensor; float16 outputs are converted. */
export function floatData(t: ort.Tensor): Float32Array {
  if (t.data instanceof Float32Array) return t.data;
  if (t.type === "float16") return halfToFloat32(t.data as Uint16Array);
  throw new ModelLoadError(`expected a float32 or float16 output, got ${t.type}`, { data: { type: t.type } });
}

export { ort };
