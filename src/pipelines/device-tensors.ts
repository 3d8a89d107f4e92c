import * as ort from "onnxruntime-node";
import { smallModelBytes, type ElemType, type SmallGraph } from "./onnx-graph/small-graph.js";
import type { NodeMsg } from "./onnx-graph/proto-wire.js";

/**
 * Tensors that live in the WebGPU device's memory between sessions, and the bytes that cross to and from it.
 *
 * onnxruntime-node 1.30 (checked with bench/webgpu-binding-check.ts): a session created with
 * `preferredOutputLocation: "gpu-buffer"` returns GPU tensors, and any WebGPU session (the UNet, the small graphs
 * here) takes them as inputs without a copy through the host. What the Node binding cannot do is read one back:
 * `getData()` on a GPU tensor aborts the process (an uncaught C++ exception) and `data` throws. So every download
 * runs a one-node graph whose output stays on the CPU ({@link DeviceTensors.download}), and the sampler's math runs
 * as small graphs on the device too (see device-step.ts).
 */

/** Host↔device traffic, in bytes: CPU tensors fed to device sessions (up) and CPU outputs read back (down). */
export interface TransferBytes {
  up: number;
  down: number;
}

function bytesOf(t: ort.Tensor): number {
  if (t.location !== "cpu") return 0;
  const d = t.data as ArrayBufferView;
  return d.byteLength;
}

/** Small device graphs kept per process: their sessions are cheap but not free to create (shader compiles). */
const MAX_SESSIONS = 64;

/** One small graph's session plus the names whose outputs stay on the device. */
interface SmallSession {
  session: ort.InferenceSession;
}

/**
 * The small graphs of one pipeline on the WebGPU device (upload, download, gather, step), a session each, cached by
 * the graph's key, and the byte counter every device call of the pipeline goes through.
 */
export class DeviceTensors {
  readonly bytes: TransferBytes = { up: 0, down: 0 };
  readonly #sessions = new Map<string, Promise<SmallSession>>();

  /** Counts `feeds` going in and `out` coming back through one device session (the UNet's included). */
  count(feeds: Record<string, ort.Tensor>, out?: Record<string, ort.Tensor>): void {
    for (const t of Object.values(feeds)) this.bytes.up += bytesOf(t);
    for (const t of Object.values(out ?? {})) this.bytes.down += bytesOf(t);
  }

  /** Runs the small graph `key` (built by `build` the first time), with `onDevice` outputs left in GPU buffers. */
  async run(key: string, build: () => SmallGraph, feeds: Record<string, ort.Tensor>, onDevice: readonly string[]): Promise<Record<string, ort.Tensor>> {
    let entry = this.#sessions.get(key);
    if (!entry) {
      const graph = build();
      const location = Object.fromEntries(graph.outputs.map((o) => [o.name, onDevice.includes(o.name) ? ("gpu-buffer" as const) : ("cpu" as const)]));
      entry = ort.InferenceSession.create(smallModelBytes(graph), { executionProviders: ["webgpu"], logSeverityLevel: 3, preferredOutputLocation: location }).then((session) => ({ session }));
      if (this.#sessions.size >= MAX_SESSIONS) this.#evictOldest();
      this.#sessions.set(key, entry);
      entry.catch(() => this.#sessions.delete(key));
    }
    const { session } = await entry;
    const out = (await session.run(feeds)) as Record<string, ort.Tensor>;
    this.count(feeds, out);
    return out;
  }

  #evictOldest(): void {
    const [key, entry] = this.#sessions.entries().next().value as [string, Promise<SmallSession>];
    this.#sessions.delete(key);
    void entry.then((e) => e.session.release()).catch(() => undefined);
  }

  /** Puts host floats on the device once, as `elem` (float16 exports get their conversion there). */
  async upload(data: Float32Array, dims: number[], elem: ElemType = "float32"): Promise<ort.Tensor> {
    const out = await this.run(`upload:${elem}:${dims.length}`, () => castGraph("upload", "float32", elem, dims.length), { x: new ort.Tensor("float32", data, dims) }, ["y"]);
    return out.y!;
  }

  /** A device tensor's values as host float32 (a float16 one is converted on the device first). */
  async download(t: ort.Tensor): Promise<Float32Array> {
    if (t.location === "cpu") return t.type === "float32" ? (t.data as Float32Array) : Float32Array.from(t.data as ArrayLike<number>);
    const elem = t.type as ElemType;
    const out = await this.run(`download:${elem}:${t.dims.length}`, () => castGraph("download", elem, "float32", t.dims.length), { x: t }, []);
    return out.y!.data as Float32Array;
  }

  async release(): Promise<void> {
    const all = [...this.#sessions.values()];
    this.#sessions.clear();
    await Promise.all(all.map((e) => e.then((s) => s.session.release()).catch(() => undefined)));
  }
}

/** y = Cast(x): an upload or download that also converts float32↔float16 (a copy for same-type). */
export function castGraph(name: string, from: ElemType, to: ElemType, rank: number): SmallGraph {
  const dims = Array.from({ length: rank }, (_, i) => `d${i}`);
  // Cast to the same type is folded away by the optimiser, leaving no node to place the output: Identity then.
  const node: NodeMsg = from === to ? { opType: "Identity", input: ["x"], output: ["y"] } : { opType: "Cast", input: ["x"], output: ["y"], attribute: [castTo(to)] };
  return { name, inputs: [{ name: "x", elem: from, dims }], outputs: [{ name: "y", elem: to, dims }], nodes: [node] };
}

/** The Cast node's `to` attribute. */
export function castTo(to: ElemType): { name: string; type: number; i: number } {
  return { name: "to", type: 2, i: to === "float16" ? 10 : 1 };
}

/** Releases a device tensor's GPU buffer now (host tensors: nothing to do). */
export function disposeOnDevice(t: ort.Tensor | undefined): void {
  if (t && t.location !== "cpu") t.dispose();
}
