import { readFileSync, statSync } from "node:fs";
import { dirname } from "node:path";
import type { LoraSpec } from "../../core/weights.js";
import { ValidationError } from "../../errors/omni-error.js";
import { componentPath } from "../model-files.js";
import { externalizeInlineWeights } from "../onnx-graph/external-weights.js";
import { deltaMismatch, type DeltaShapes } from "./delta.js";
import { fusedWeight } from "./delta-session.js";
import { readLoraLayers, sample, type LoraComponent, type LoraLayer } from "./lora-file.js";
import { encodeInitializer, findLayerWeights, initializerBytes, readInitializer, replaceInitializers, type LayerWeight } from "./onnx-initializers.js";
import { SafetensorsFile } from "./safetensors.js";

/** A rewrite of a component's graph bytes before its session is created (OnnxModel applies it). */
export type GraphEdit = (graph: Uint8Array) => Promise<Uint8Array>;

/** The checked LoRA set: one graph edit per component it patches. */
export interface FusedLoras {
  edits: Partial<Record<LoraComponent, GraphEdit>>;
  /** Weights patched (a weight two LoRAs touch counts once). */
  layers: number;
  /** Their bytes in the stored dtype: the fused copies a session holds inline ({@link FUSED_RESIDENT_PER_BYTE}). */
  patchedBytes: number;
}

/**
 * Resident bytes a session adds per byte of fused weights. Fused weights reach onnxruntime inline in the graph
 * (external data outside the export's folder is refused), and onnxruntime-node 1.30 keeps inline initializers at
 * 2.4-3.4 times their size beside the exported weights they replace (two runs of bench/lora-fuse.ts, full-size SD 1.5
 * UNet, a rank-32 LoRA on its 192 transformer weights: 1018 MiB fused, +2.5 and +3.3 GiB resident). The budget takes
 * the high end: a refused load is a clear 507, an underestimate is an OOM kill.
 */
export const FUSED_RESIDENT_PER_BYTE = 3.4;

/** Inline graphs above this are read through externalizeInlineWeights (as OnnxModel loads them), never whole. */
const MAX_GRAPH_BYTES = 64 * 1024 ** 2;

/**
 * Checks `loras` against the model in `modelDir` (formats, keys that match nothing, shapes of another
 * architecture: every refusal happens here, before any session exists) and returns the graph edits that fuse them
 * into the UNet and text encoder. An edit computes its fused weights when a session is created and lets go of
 * them once the session holds them: a loaded pipeline keeps no second copy (a reload after sleep fuses again).
 */
export async function fuseLoras(modelDir: string, loras: readonly LoraSpec[]): Promise<FusedLoras> {
  const plan = await fusePass(modelDir, loras, null);
  const edits: FusedLoras["edits"] = {};
  for (const c of plan.components) edits[c] = async (graph) => replaceInitializers(graph, (await fusePass(modelDir, loras, c)).fused);
  return { edits, layers: plan.layers, patchedBytes: plan.patchedBytes };
}

/** The fused initializers of one component, as the TensorProto bytes that replace them (bench/lora-fuse.ts sizes them). */
export async function fusedInitializers(modelDir: string, loras: readonly LoraSpec[], component: LoraComponent): Promise<Map<string, Uint8Array>> {
  return (await fusePass(modelDir, loras, component)).fused;
}

/** Opens, parses and checks every LoRA; with `component`, fuses that component's weights. */
async function fusePass(
  modelDir: string,
  loras: readonly LoraSpec[],
  component: LoraComponent | null,
): Promise<{ components: LoraComponent[]; layers: number; patchedBytes: number; fused: Map<string, Uint8Array> }> {
  const files = loras.map((l) => ({ spec: l, file: SafetensorsFile.open(l.path) }));
  try {
    const parsed = files.map(({ spec, file }) => ({ spec, file, layers: readLoraLayers(file) }));
    const graphs = new Map<LoraComponent, { dir: string; byModule: Map<string, LayerWeight>; byFlat: Map<string, LayerWeight> }>();
    const graphOf = (c: LoraComponent) => {
      let g = graphs.get(c);
      if (!g) {
        const path = componentPath(modelDir, c);
        const byModule = findLayerWeights(readGraph(path));
        const byFlat = new Map([...byModule.values()].map((w) => [w.module.replace(/\./g, "_"), w]));
        g = { dir: dirname(path), byModule, byFlat };
        graphs.set(c, g);
      }
      return g;
    };
    // Every LoRA is checked (keys, shapes, alpha) before any model weight is read.
    const plan = new Map<string, { component: LoraComponent; weight: LayerWeight; deltas: Delta[] }>();
    for (const { spec, file, layers } of parsed) {
      const matched = layers.map((l) => ({ l, w: find(graphOf(l.component), l) }));
      const missing = matched.filter((m) => !m.w).map((m) => m.l.key);
      if (missing.length === layers.length) {
        throw new ValidationError(`LoRA ${spec.name}: none of its ${layers.length} layers is in this model (${sample(missing)}); it is for another model or architecture`, {
          field: "loras",
          data: { lora: spec.name, keys: missing.slice(0, 10) },
        });
      }
      if (missing.length) {
        throw new ValidationError(`LoRA ${spec.name}: ${missing.length} of its ${layers.length} layers are not in this model (${sample(missing)})`, {
          field: "loras",
          data: { lora: spec.name, keys: missing.slice(0, 10) },
        });
      }
      for (const { l, w } of matched) {
        const delta = planDelta(spec, file, l, w!);
        const entry = plan.get(w!.init.name) ?? { component: l.component, weight: w!, deltas: [] };
        entry.deltas.push(delta);
        plan.set(w!.init.name, entry);
      }
    }
    const components = [...new Set([...plan.values()].map((p) => p.component))];
    // One weight at a time in float32: peak memory is the fused weights in their dtype plus one float32 working copy.
    const fused = new Map<string, Uint8Array>();
    for (const [name, { component: c, weight, deltas }] of plan) {
      if (c !== component) continue;
      let values = readInitializer(weight.init, graphOf(c).dir);
      for (const d of deltas) values = await fusedWeight(values, d.shapes, d.file.read(d.down), d.file.read(d.up), d.s);
      fused.set(name, encodeInitializer(weight.init, values));
    }
    const patchedBytes = [...plan.values()].reduce((n, p) => n + initializerBytes(p.weight.init), 0);
    return { components, layers: plan.size, patchedBytes, fused };
  } finally {
    for (const { file } of files) file.close();
  }
}

function find(g: { byModule: Map<string, LayerWeight>; byFlat: Map<string, LayerWeight> }, l: LoraLayer): LayerWeight | undefined {
  return "dotted" in l.match ? matchModule(g.byModule, l.match.dotted, ".") : matchModule(g.byFlat, l.match.flat, "_");
}

/**
 * The weight of module `name`: its exact path, else the one graph path that is a suffix of it or has it as a
 * suffix (on a `sep` boundary): exports whose top module wraps differently (`/layers.0/self_attn/q_proj` for
 * CLIP's `text_model.encoder.layers.0.self_attn.q_proj`) still match, an ambiguous suffix never does.
 */
export function matchModule(modules: ReadonlyMap<string, LayerWeight>, name: string, sep: string): LayerWeight | undefined {
  const exact = modules.get(name);
  if (exact) return exact;
  let found: LayerWeight | undefined;
  for (const [path, w] of modules) {
    if (!name.endsWith(sep + path) && !path.endsWith(sep + name)) continue;
    if (found) return undefined;
    found = w;
  }
  return found;
}

interface Delta {
  file: SafetensorsFile;
  down: string;
  up: string;
  shapes: DeltaShapes;
  /** scale · alpha / rank. */
  s: number;
}

/** The checked update one LoRA layer makes to weight `w`; a ValidationError naming the layer when it does not fit. */
function planDelta(spec: LoraSpec, file: SafetensorsFile, l: LoraLayer, w: LayerWeight): Delta {
  const down = file.tensors.get(l.down)!;
  const up = file.tensors.get(l.up)!;
  const shapes = { weight: w.init.dims, layout: w.layout, down: down.shape, up: up.shape };
  const why = deltaMismatch(shapes);
  if (why) {
    throw new ValidationError(`LoRA ${spec.name} does not fit this model at ${l.key} (${w.module}, ${w.op}): ${why}; it is for another architecture`, {
      field: "loras",
      data: { lora: spec.name, key: l.key },
    });
  }
  const rank = down.shape[0]!;
  let alpha = rank;
  if (l.alpha) {
    const a = file.read(l.alpha);
    if (a.length !== 1 || !Number.isFinite(a[0])) throw new ValidationError(`LoRA ${spec.name}: ${l.alpha} is not one finite number`, { field: "loras" });
    alpha = a[0]!;
  }
  return { file, down: l.down, up: l.up, shapes, s: (spec.scale * alpha) / rank };
}

/** The graph bytes as OnnxModel reads them: big inline files with their weights turned into references. */
function readGraph(path: string): Uint8Array {
  if (statSync(path).size > MAX_GRAPH_BYTES) {
    const mapped = externalizeInlineWeights(path);
    if (mapped) return mapped;
  }
  return readFileSync(path);
}
