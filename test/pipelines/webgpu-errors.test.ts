/**
 * `device: "webgpu"` where no adapter exists, on any machine: the Vulkan loader is pointed at a driver manifest that
 * does not exist (`VK_ICD_FILENAMES`), which hides every driver as a machine without a GPU or Mesa would. Every
 * entry point says so in one line naming what to install, never Dawn's warnings and stack lines. Also the placement
 * summary behind the fallback log line, read from an onnxruntime profile.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, it } from "node:test";
import { DiffusionEngine } from "../../src/engine/engine.js";
import { ConfigError } from "../../src/errors/omni-error.js";
import { loadPipeline } from "../../src/pipelines/load.js";
import { describePlacement, summarisePlacement } from "../../src/pipelines/webgpu-placement.js";
import { MODEL_DIR } from "../helpers/model.js";

// For this test process and every process it starts (the probe, the engine's workers, the CLI).
process.env.VK_ICD_FILENAMES = "/nonexistent/omni-no-driver.json";

const CLI = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));
const run = promisify(execFile);

const isNoAdapter = (e: unknown) =>
  e instanceof ConfigError &&
  e.data.field === "device" &&
  e.statusCode === 400 &&
  /^device "webgpu": no usable WebGPU adapter \(/.test(e.message) &&
  /mesa-vulkan-drivers >= 24/.test(e.message) &&
  /Vulkan driver for your GPU/.test(e.message);

/** stderr of a CLI run that must fail: exactly one line, our error, none of Dawn's or Vulkan's own output. */
async function failingCli(args: string[]): Promise<string> {
  const r = await run(process.execPath, ["--import", "tsx", CLI, ...args], { timeout: 60_000 }).then(
    () => null,
    (e: { code?: number; stderr?: string }) => e,
  );
  assert.ok(r, `omni-diffusion ${args.join(" ")} succeeded without an adapter`);
  assert.equal(r.code, 1);
  const lines = (r.stderr ?? "").trim().split("\n");
  assert.equal(lines.length, 1, `one line on stderr, got:\n${r.stderr}`);
  assert.match(lines[0]!, /^omni-diffusion: device "webgpu": no usable WebGPU adapter .*mesa-vulkan-drivers >= 24.*\[OMNI_ERR_CONFIG\]$/);
  assert.doesNotMatch(r.stderr!, /CheckVkSuccessImpl|vkCreateInstance failed|\.cc:\d+|\n\s+at /);
  return lines[0]!;
}

describe("webgpu without an adapter", { timeout: 180_000 }, () => {
  it("loadPipeline: a ConfigError naming the device and what to install", async () => {
    await assert.rejects(loadPipeline(MODEL_DIR, { device: "webgpu", intraOpNumThreads: 1 }), isNoAdapter);
  });

  it("the same error reaches the engine from a worker process", async () => {
    await assert.rejects(DiffusionEngine.create({ model: MODEL_DIR, device: "webgpu", numGpus: 1, intraOpNumThreads: 1 }), (e: unknown) => {
      assert.ok(e instanceof Error && /no usable WebGPU adapter/.test(e.message) && /mesa-vulkan-drivers >= 24/.test(e.message), String(e));
      return true;
    });
  });

  it("generate, serve and info --device webgpu: one line on stderr, exit 1", async () => {
    const dir = mkdtempSync(join(tmpdir(), "omni-webgpu-"));
    try {
      await failingCli(["generate", "a red circle on a blue background", "--device", "webgpu", "--executor", "uniproc", "--out", join(dir, "x.png")]);
      assert.equal(existsSync(join(dir, "x.png")), false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    await failingCli(["serve", "--device", "webgpu", "--port", "0", "--data-dir", join(dir, "data")]);
    const info = await failingCli(["info", "--device", "webgpu"]);
    assert.match(info, /Vulkan drivers installed: \/nonexistent\/omni-no-driver\.json \(from VK_ICD_FILENAMES\)/);
  });
});

describe("the fallback report read from onnxruntime's profile", () => {
  // The shape of onnxruntime 1.30's profile: one "Node" event per kernel run, with its provider and operator.
  const node = (name: string, op: string, provider: string) => ({ cat: "Node", name: `${name}_kernel_time`, args: { provider, op_name: op } });
  const events = [
    { cat: "Session", name: "model_loading_uri", args: {} },
    node("/conv", "Conv", "WebGpuExecutionProvider"),
    node("/shape/Gather", "Gather", "CPUExecutionProvider"),
    { cat: "Node", name: "/shape/Gather_fence_before", args: { op_name: "Gather" } },
    node("/shape/Unsqueeze", "Unsqueeze", "CPUExecutionProvider"),
    node("/shape/Gather_1", "Gather", "CPUExecutionProvider"),
    node("/attn/MatMul", "MatMul", "WebGpuExecutionProvider"),
  ];

  it("counts nodes per provider and the CPU's by operator, names them in run order", () => {
    const p = summarisePlacement(events);
    assert.deepEqual(p.byProvider, { WebGpuExecutionProvider: 2, CPUExecutionProvider: 3 });
    assert.deepEqual(p.cpuOps, [["Gather", 2], ["Unsqueeze", 1]]);
    assert.deepEqual(p.cpuNodes, ["/shape/Gather", "/shape/Unsqueeze", "/shape/Gather_1"]);
    const line = describePlacement("unet", "/m/unet/model.onnx", p);
    assert.match(line, /^webgpu: unet \(\/m\/unet\/model\.onnx\) runs 3 of 5 nodes on the CPU \(Gather 2, Unsqueeze 1\): \/shape\/Gather, \/shape\/Unsqueeze, \/shape\/Gather_1\./);
  });
});
