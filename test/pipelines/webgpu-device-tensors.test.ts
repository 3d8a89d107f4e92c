/**
 * Tensors kept on the WebGPU device between steps (src/pipelines/device-step.ts), on a real adapter (in CI: Mesa's
 * software Vulkan): what crosses between host and device per step, counted where it crosses (DeviceTensors), and
 * the images against the CPU's — for samplers stepped on the device, a multistep sampler stepped on the host, both
 * in one UNet call, and the fp16 fixture. Without an adapter every test here skips and says why on stderr.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { OmniDiffusionRequest } from "../../src/core/request.js";
import { loadPipeline } from "../../src/pipelines/load.js";
import type { OnnxDiffusionPipeline } from "../../src/pipelines/onnx-diffusion-pipeline.js";
import { heldDeviceTensors } from "../../src/pipelines/device-step.js";
import { StepLoop } from "../../src/pipelines/step-loop.js";
import type { GeneratedImage } from "../../src/core/output.js";
import { AbortedError } from "../../src/errors/omni-error.js";
import type { DiffusionPipeline } from "../../src/pipelines/types.js";
import { probeWebGpu } from "../../src/pipelines/webgpu-adapter.js";
import { pixelDiff } from "../batching/helpers.js";
import { MODEL_DIR } from "../helpers/model.js";
import { fixtureDir } from "../models/fixtures.js";

const probe = await probeWebGpu();
const skip = probe.ok ? false : `no WebGPU adapter here (${probe.reason}); CI installs mesa-vulkan-drivers from bookworm-backports for one`;
if (skip && process.env.OMNI_DIFFUSION_REQUIRE_WEBGPU === "1") throw new Error(`OMNI_DIFFUSION_REQUIRE_WEBGPU=1 but ${skip}`);
if (skip) console.warn(`\n*** SKIPPING the webgpu device-tensor tests: ${skip} ***\n`);

/** tiny-shapes' latents: 3×32×32 float32. */
const LATENT_BYTES = 3 * 32 * 32 * 4;

const req = (id: string, scheduler: string, steps: number, seed = 5) =>
  new OmniDiffusionRequest({ requestId: id, prompt: "a green square on a yellow background", seed, numInferenceSteps: steps, guidanceScale: 4, scheduler });

describe("webgpu: tensors on the device", { skip, timeout: 300_000 }, () => {
  let cpu: DiffusionPipeline;
  let gpu: OnnxDiffusionPipeline;
  before(async () => {
    cpu = await loadPipeline(MODEL_DIR, { intraOpNumThreads: 1 });
    gpu = (await loadPipeline(MODEL_DIR, { intraOpNumThreads: 1, device: "webgpu" })) as OnnxDiffusionPipeline;
  });
  after(async () => {
    await cpu?.release();
    await gpu?.release();
  });

  /** Bytes up and down one request of `steps` steps costs on the device. */
  async function bytesOf(scheduler: string, steps: number): Promise<{ up: number; down: number }> {
    const dev = gpu.deviceTensors!;
    const before = { ...dev.bytes };
    const out = await gpu.generate([req(`bytes-${scheduler}-${steps}`, scheduler, steps)]);
    assert.deepEqual(out.errors, {});
    return { up: dev.bytes.up - before.up, down: dev.bytes.down - before.down };
  }

  it("a step of a device sampler moves no latents: nothing comes down, only scalars go up (noise for ancestral)", async () => {
    for (const scheduler of ["ddim", "euler", "euler_a"]) {
      // The difference between 4 and 2 steps is two steady steps: the embeddings and first latents went up once in both.
      const [two, four] = [await bytesOf(scheduler, 2), await bytesOf(scheduler, 4)];
      const perStep = { up: (four.up - two.up) / 2, down: (four.down - two.down) / 2 };
      assert.equal(perStep.down, 0, `${scheduler}: ${perStep.down} bytes down per step`);
      // euler_a's noise is drawn on the host (the CPU path's own stream) and goes up scaled: one latent per step.
      const noise = scheduler === "euler_a" ? LATENT_BYTES : 0;
      assert.ok(perStep.up <= noise + 256, `${scheduler}: ${perStep.up} bytes up per step`);
    }
  });

  it("a multistep sampler (dpmpp_2m) gets one guided ε down per step, not both guidance rows", async () => {
    const [two, four] = [await bytesOf("dpmpp_2m", 2), await bytesOf("dpmpp_2m", 4)];
    assert.equal((four.down - two.down) / 2, LATENT_BYTES);
  });

  it("the host path (deviceSteps off) still round-trips the latents: the counter sees it", async () => {
    gpu.deviceSteps = "off";
    try {
      const [two, four] = [await bytesOf("ddim", 2), await bytesOf("ddim", 4)];
      assert.equal((four.down - two.down) / 2, 2 * LATENT_BYTES, "both guidance rows of the UNet's output come down");
    } finally {
      gpu.deviceSteps = "on";
    }
  });

  it("device and host samplers in one UNet call each give the CPU's image (within 2 levels)", async () => {
    const batch = [req("mix-ddim", "ddim", 3, 21), req("mix-dpm", "dpmpp_2m", 3, 22), req("mix-euler-a", "euler_a", 3, 23)];
    const a = await cpu.generate(batch);
    const b = await gpu.generate(batch);
    assert.deepEqual([a.errors, b.errors], [{}, {}]);
    for (let i = 0; i < batch.length; i++) {
      const diff = pixelDiff(a.output[i]!, b.output[i]!);
      assert.ok(diff <= 2, `${batch[i]!.requestId}: webgpu differs from cpu by ${diff} levels`);
    }
  });

  it("an aborted request gives its device buffers back (latents, predicted x0, text embeddings)", async () => {
    const loop = new StepLoop(gpu, { maxBatchRows: 64 });
    const r = req("abort-me", "euler_a", 6);
    let stop = false;
    const out = await loop.run([{ request: r, params: gpu.resolve(r) }], {
      // Aborts are checked between steps: after the second step the request leaves at the third.
      onProgress: (p) => {
        if (p.step === 2) {
          assert.ok(heldDeviceTensors() > 0, "the running request holds device tensors");
          stop = true;
        }
      },
      isAborted: () => stop,
    });
    assert.ok(out.errors["abort-me"] instanceof AbortedError, String(out.errors["abort-me"]));
    assert.equal(heldDeviceTensors(), 0);
  });

  it("previews read the predicted clean sample from the device, as the CPU path shows it", async () => {
    const previews = async (p: DiffusionPipeline) => {
      const got: GeneratedImage[] = [];
      const out = await p.generate([req("preview", "ddim", 4, 8)], { previewEvery: 1, onProgress: (e) => e.step === 2 && e.preview && got.push(e.preview[0]!) });
      assert.deepEqual(out.errors, {});
      return got;
    };
    const [a, b] = [await previews(cpu), await previews(gpu)];
    assert.equal(a.length, 1);
    assert.equal(b.length, 1);
    const diff = pixelDiff(a[0]!, b[0]!);
    assert.ok(diff <= 2, `the step-2 preview differs from the CPU's by ${diff} levels`);
  });

  it("the fp16 fixture steps on the device (float16 casts there) and gives the CPU's image", async () => {
    const dir = fixtureDir("sd15-fp16");
    const f16Lines: string[] = [];
    const onWarning = (w: Error) => w.name === "WebGpuFloat16" && f16Lines.push(w.message);
    process.on("warning", onWarning);
    const c16 = await loadPipeline(dir, { intraOpNumThreads: 1 });
    const g16 = (await loadPipeline(dir, { intraOpNumThreads: 1, device: "webgpu" })) as OnnxDiffusionPipeline;
    try {
      const r = new OmniDiffusionRequest({ requestId: "fp16", prompt: "a photo of a cat", seed: 3, numInferenceSteps: 2, guidanceScale: 4, scheduler: "euler", width: 64, height: 64 });
      const a = await c16.generate([r]);
      const before = { ...g16.deviceTensors!.bytes };
      const b = await g16.generate([r]);
      assert.deepEqual([a.errors, b.errors], [{}, {}]);
      const diff = pixelDiff(a.output[0]!, b.output[0]!);
      assert.ok(diff <= 2, `fp16: webgpu differs from cpu by ${diff} levels`);
      // Only the final latents came down (float32 after the device's cast), no UNet output.
      const latent = 4 * 8 * 8 * 4; // [4, 8, 8] float32
      assert.equal(g16.deviceTensors!.bytes.down - before.down, latent);
      // One line says whether the adapter runs half precision natively (shader-f16).
      assert.equal(f16Lines.length, 1, f16Lines.join("\n"));
      assert.match(f16Lines[0]!, /shader-f16/);
    } finally {
      process.off("warning", onWarning);
      await c16.release();
      await g16.release();
    }
  });
});
