/**
 * How a worker loads its pipeline: the options the parent hands a worker process over the IPC (protocol/
 * worker-ipc.ts), so they live in core, below both protocol/ and pipelines/.
 */
import type { PreviewDecoder } from "./decoders.js";
import type { Device } from "./devices.js";
import type { LoraSpec } from "./weights.js";

/** How to create onnxruntime sessions. */
export interface PipelineLoadOptions {
  /** Pipeline class to use instead of model_index.json's `_class_name`. */
  modelClassName?: string;
  /** Where the ONNX sessions run: `cpu` (default) or `cuda` (onnxruntime-node's CUDA execution provider). */
  device?: Device;
  /** onnxruntime intra-op threads for each session. */
  intraOpNumThreads?: number;
  /** Let idle intra-op threads spin for work (onnxruntime's `session.intra_op.allow_spinning`; its default: on). */
  intraOpSpinning?: boolean;
  /** A tiny VAE folder (AutoencoderTiny export) for previews and `vae: "tiny"`; default: the model's `tiny_vae/`. */
  tinyVae?: string;
  /** What decodes step previews (core/decoders.ts; default `auto`: the cheapest the model has). */
  previewDecoder?: PreviewDecoder;
  /** onnxruntime memory settings (arena, pattern planner, pre-packing); absent: the measured defaults. */
  memory?: Partial<MemoryTuning>;
  /** What this worker may use, bytes (core/memory-estimate.ts); default: 90 % of the machine's memory; 0: unchecked. */
  memoryBudgetBytes?: number;
  /** LoRAs to fuse into the model's weights before its sessions are created (core/weights.ts). */
  loras?: LoraSpec[];
}

/**
 * onnxruntime session settings that decide a worker's resident memory (bench/realscale.ts measures each;
 * docs/models.md#memory has the figures).
 */
export interface MemoryTuning {
  /** The CPU arena (`enableCpuMemArena`): keeps each session's peak activations allocated after a run. */
  cpuMemArena: boolean;
  /** The memory pattern planner (`enableMemPattern`): one pre-planned block for every activation of a shape. */
  memPattern: boolean;
  /** Pre-packing of MatMul/Conv weights into MLAS's layouts (`session.disable_prepacking` off): a second copy of those weights. */
  prepacking: boolean;
  /**
   * Query-row chunks per attention in the UNet and VAE decoder graphs (onnx-graph/attention-slicing.ts): only one
   * chunk's score matrix is alive at a time. 1 leaves the graphs as exported.
   */
  attentionSlices: number;
  /**
   * Load a model file with inline weights as a graph whose weights point into that file (onnx-graph/
   * external-weights.ts), as exports with `weights.pb` load: onnxruntime's layout optimisations otherwise keep a
   * second copy of rewritten weights (SD 1.5's text encoder and VAEs: +0.6 GiB resident).
   */
  mapInlineWeights: boolean;
  /** Decode a batch with the full VAE one image per call (image-decoder.ts): one image's activations alive, not the batch's. */
  vaeSlicing: boolean;
}
