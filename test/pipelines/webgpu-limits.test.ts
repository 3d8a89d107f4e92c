/**
 * A GPU's buffer limits in the memory estimate (pipelines/webgpu-limits.ts, core/limits.ts): the adapter's limits as
 * read from the Vulkan driver, a request whose largest tensor (self-attention's scores) the device cannot hold
 * refused with a typed error naming the numbers, and a webgpu pipeline describing its limits. The limits are data:
 * the refusal is tested with injected ones; the last test needs an adapter (it skips loudly without one).
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { DEFAULT_REQUEST_LIMITS, checkRequestLimits } from "../../src/core/limits.js";
import { LimitExceededError } from "../../src/errors/omni-error.js";
import { loadPipeline } from "../../src/pipelines/load.js";
import { describeOnnxModel, type ModelDescriptionInput } from "../../src/pipelines/model-limits.js";
import type { OnnxDiffusionPipeline } from "../../src/pipelines/onnx-diffusion-pipeline.js";
import { probeWebGpu } from "../../src/pipelines/webgpu-adapter.js";
import { WEBGPU_MINIMUM_LIMITS, float16Line, parseVulkanLimits, readWebGpuLimits } from "../../src/pipelines/webgpu-limits.js";
import { describeWebGpu } from "../../src/pipelines/webgpu-info.js";
import { fixtureDir } from "../models/fixtures.js";

/** The lines of `vulkaninfo` (Mesa 25.0's lavapipe) the limits come from, with the surrounding noise of the report. */
const LAVAPIPE = `
VkPhysicalDeviceProperties:
	deviceName        = llvmpipe (LLVM 15.0.6, 256 bits)
	limits:
		maxStorageBufferRange                           = 134217728
VkPhysicalDeviceMaintenance3Properties:
	maxMemoryAllocationSize = 0x80000000
VkPhysicalDeviceMaintenance4Properties:
	maxBufferSize = 0xffffffff
VkPhysicalDeviceShaderFloat16Int8Features:
	shaderFloat16 = true
VkPhysicalDevice16BitStorageFeatures:
	storageBuffer16BitAccess           = true
`;

const MiB = 1024 ** 2;

describe("webgpu buffer limits", () => {
  it("are read from vulkaninfo as Dawn maps them; the smallest device wins; none named: null", () => {
    assert.deepEqual(parseVulkanLimits(LAVAPIPE), { maxBufferSize: 2048 * MiB, maxStorageBufferBindingSize: 128 * MiB, shaderF16: true, source: "the Vulkan driver (vulkaninfo)" });
    const two = LAVAPIPE + LAVAPIPE.replace("134217728", "1073741824").replace("0x80000000", "0x40000000").replace("shaderFloat16 = true", "shaderFloat16 = false");
    assert.deepEqual(parseVulkanLimits(two), { maxBufferSize: 1024 * MiB, maxStorageBufferBindingSize: 128 * MiB, shaderF16: false, source: "the Vulkan driver (vulkaninfo)" });
    assert.equal(parseVulkanLimits("ERROR: no devices"), null);
  });

  it("a float16 export's line says whether half precision runs natively, or what happens without shader-f16", () => {
    const at = (shaderF16: boolean | null) => float16Line({ ...WEBGPU_MINIMUM_LIMITS, shaderF16 });
    assert.match(at(true), /has shader-f16, so onnxruntime runs its half-precision kernels natively/);
    assert.match(at(false), /lacks shader-f16 \(Vulkan shaderFloat16 \/ storageBuffer16BitAccess\).*run on the CPU/);
    assert.match(at(null), /unknown here \(no vulkaninfo\)/);
  });

  it("a size whose attention scores exceed the device's largest buffer is refused, naming the numbers", () => {
    const sd15: ModelDescriptionInput = {
      unetConfig: JSON.parse(readFileSync(join(fixtureDir("sd15"), "unet", "config.json"), "utf8")),
      schedulerConfig: { prediction_type: "epsilon" },
      vaeScale: 8,
      latentChannels: 4,
      sample: { name: "sample", type: "float32", shape: ["batch", 4, "height", "width"] },
      encoderHiddenStates: { name: "encoder_hidden_states", type: "float32", shape: ["batch", 77, 768] },
      textTokens: 77,
      textDim: 768,
      sizeMultiple: 8,
    };
    const limits = { ...DEFAULT_REQUEST_LIMITS, allowNonNativeSizes: true, maxRequestBytes: 1024 ** 4 };
    const req = (side: number) => ({ prompt: "x", width: side, height: side, guidanceScale: 7.5 });
    // On the CPU the same request is the memory budget's business only (unchecked here).
    assert.doesNotThrow(() => checkRequestLimits(req(512), limits, describeOnnxModel(sd15)));
    const gpu = describeOnnxModel({ ...sd15, deviceLimits: WEBGPU_MINIMUM_LIMITS });
    // SD 1.5 at 512², two rows: 2 × 8 heads × 4096² × 4 B = 1 GiB of scores in one tensor, against 128 MiB.
    assert.throws(
      () => checkRequestLimits(req(512), limits, gpu),
      (e: unknown) =>
        e instanceof LimitExceededError &&
        e.field === "width" &&
        /estimated 1024 MiB/.test(e.message) &&
        /maxStorageBufferBindingSize 128 MiB, maxBufferSize 256 MiB, from the WebGPU minimum/.test(e.message),
    );
    // A quarter of the pixels: a sixteenth of the scores (64 MiB) fits.
    assert.doesNotThrow(() => checkRequestLimits(req(256), limits, gpu));
    // Sliced attention (16 slices) brings 512² within the buffer.
    assert.doesNotThrow(() => checkRequestLimits(req(512), limits, describeOnnxModel({ ...sd15, attentionSlices: 16, deviceLimits: WEBGPU_MINIMUM_LIMITS })));
  });
});

const probe = await probeWebGpu();
const skip = probe.ok ? false : `no WebGPU adapter here (${probe.reason}); CI installs mesa-vulkan-drivers from bookworm-backports for one`;
if (skip && process.env.OMNI_DIFFUSION_REQUIRE_WEBGPU === "1") throw new Error(`OMNI_DIFFUSION_REQUIRE_WEBGPU=1 but ${skip}`);
if (skip) console.warn(`\n*** SKIPPING the webgpu pipeline-limits test: ${skip} ***\n`);

describe("webgpu pipeline limits", { skip, timeout: 300_000 }, () => {
  it("info --device webgpu describes the buffer limits and shader-f16 it checks against", async () => {
    const info = await describeWebGpu();
    assert.deepEqual(info.limits, await readWebGpuLimits());
    assert.ok(info.limits.maxStorageBufferBindingSize >= WEBGPU_MINIMUM_LIMITS.maxStorageBufferBindingSize);
  });

  it("a webgpu pipeline's model limits carry the adapter's buffer limits", async () => {
    const p = (await loadPipeline(fixtureDir("sd15"), { intraOpNumThreads: 1, device: "webgpu" })) as OnnxDiffusionPipeline;
    try {
      const device = p.describe().memory?.device;
      assert.ok(device, "memory.device");
      assert.ok(device.maxStorageBufferBindingSize >= WEBGPU_MINIMUM_LIMITS.maxStorageBufferBindingSize, JSON.stringify(device));
      assert.ok(device.maxBufferSize >= device.maxStorageBufferBindingSize, JSON.stringify(device));
      assert.ok(device.largestBufferBytesPerRow > 0);
    } finally {
      await p.release();
    }
  });
});
