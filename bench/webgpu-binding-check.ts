/**
 * What onnxruntime-node's binding can do with GPU tensors on the WebGPU provider (the facts device-step.ts is built
 * on), checked on this machine's adapter: a `gpu-buffer` output fed to the same session, to another session, and
 * re-wrapped with `Tensor.fromGpuBuffer`; `data` on it; and `getData()` on it, in a child process because it
 * aborts the process in onnxruntime-node 1.30.
 *
 *   npx tsx bench/webgpu-binding-check.ts
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import * as ort from "onnxruntime-node";
import { smallModelBytes } from "../src/pipelines/onnx-graph/small-graph.js";

const add = smallModelBytes({ name: "add", inputs: [{ name: "x", elem: "float32", dims: ["n"] }], outputs: [{ name: "y", elem: "float32", dims: ["n"] }], nodes: [{ opType: "Add", input: ["x", "x"], output: ["y"] }] });
const opts = { executionProviders: ["webgpu"], logSeverityLevel: 3 as const };
const gpu = await ort.InferenceSession.create(add, { ...opts, preferredOutputLocation: "gpu-buffer" });
const cpu = await ort.InferenceSession.create(add, opts);
const a = (await gpu.run({ x: new ort.Tensor("float32", Float32Array.of(1, 2, 3), [3]) })).y!;

if (process.argv[2] === "--getdata") {
  await a.getData();
  console.log("getData returned");
  process.exit(0);
}
const say = (what: string, result: string) => console.log(`${what.padEnd(58)} ${result}`);
say("gpu-buffer output", `location ${a.location}, gpuBuffer ${typeof a.gpuBuffer}`);
const b = (await gpu.run({ x: a })).y!;
const c = (await cpu.run({ x: b })).y!;
say("fed to the same session, then to another (cpu output)", `[${Array.from(c.data as Float32Array)}] (expected [4,8,12] then x2: [8,16,24])`);
const wrapped = ort.Tensor.fromGpuBuffer(a.gpuBuffer, { dataType: "float32", dims: [3] });
say("Tensor.fromGpuBuffer(output.gpuBuffer) fed to another session", `[${Array.from((await cpu.run({ x: wrapped })).y!.data as Float32Array)}]`);
try {
  void a.data;
  say("output.data", "returned (unexpected)");
} catch (e) {
  say("output.data", `throws: ${(e as Error).message.slice(0, 60)}…`);
}
const child = spawnSync(process.execPath, ["--import", "tsx", fileURLToPath(import.meta.url), "--getdata"], { encoding: "utf8" });
say("output.getData() (child process)", child.status === 0 ? "returned" : `killed the process: status ${child.status} signal ${child.signal} (${child.stderr.trim().split("\n").filter((l) => /terminate|abort/i.test(l))[0] ?? ""})`);
process.exit(0);
