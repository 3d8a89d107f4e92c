/** `device`: config key and alias, and the clear error where onnxruntime-node's CUDA provider is not installed. */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { parseConfig } from "../../src/core/config.js";
import { DiffusionEngine } from "../../src/engine/engine.js";
import { ConfigError } from "../../src/errors/omni-error.js";
import { onnxruntimeBinDir } from "../../src/pipelines/device.js";
import { loadPipeline } from "../../src/pipelines/load.js";
import { fixtureDir } from "./fixtures.js";

const cudaInstalled = existsSync(join(onnxruntimeBinDir(), "libonnxruntime_providers_cuda.so"));
const noCuda = cudaInstalled ? "onnxruntime-node's CUDA provider is installed here (bench/gpu-check.sh covers that case)" : false;

const isCudaMissing = (e: unknown) =>
  e instanceof ConfigError && e.data.field === "device" && e.statusCode === 400 && /libonnxruntime_providers_cuda\.so/.test(e.message) && /ONNXRUNTIME_NODE_INSTALL=cuda12/.test(e.message);

describe("device", () => {
  it("defaults to cpu; executionProvider is its old name; disagreeing values are refused", () => {
    assert.equal(parseConfig({}).device, "cpu");
    assert.equal(parseConfig({ device: "cuda" }).device, "cuda");
    assert.equal(parseConfig({ executionProvider: "cuda" }).device, "cuda");
    assert.equal(parseConfig({ executionProvider: "cuda", device: "cuda" }).device, "cuda");
    assert.throws(() => parseConfig({ executionProvider: "cuda", device: "cpu" }), (e: unknown) => e instanceof ConfigError && e.data.field === "device");
    assert.throws(() => parseConfig({ device: "tpu" as never }), (e: unknown) => e instanceof ConfigError && /device/.test(e.message));
  });

  it("cuda without onnxruntime-node's CUDA libraries: a ConfigError naming the missing files and the install flag", { skip: noCuda }, async () => {
    await assert.rejects(loadPipeline(fixtureDir("sd15"), { device: "cuda", intraOpNumThreads: 1 }), isCudaMissing);
  });

  it("the same error reaches the engine from a worker process", { skip: noCuda, timeout: 60_000 }, async () => {
    await assert.rejects(DiffusionEngine.create({ model: fixtureDir("sd15"), device: "cuda", numGpus: 1, intraOpNumThreads: 1 }), (e: unknown) => {
      assert.ok(e instanceof Error && /libonnxruntime_providers_cuda\.so/.test(e.message), String(e));
      return true;
    });
  });
});
