/**
 * `device: "webgpu"` on a real adapter (in CI: Mesa's software Vulkan, lavapipe; see docs/models.md#gpu-without-cuda):
 * the shipped model's images against the CPU's for three samplers, two SD 1.5-layout fixtures (fp32 and fp16)
 * through `serve` against their torch references, continuous batching with a request joining another, an abort
 * mid-run, and the log line naming the nodes that fell back to the CPU. Without an adapter every test here skips
 * and says why on stderr.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { DiffusionOutput } from "../../src/core/output.js";
import { OmniDiffusionRequest } from "../../src/core/request.js";
import { AbortedError } from "../../src/errors/omni-error.js";
import { startServer } from "../../src/index.js";
import { loadPipeline } from "../../src/pipelines/load.js";
import { componentPath } from "../../src/pipelines/model-files.js";
import { OnnxModel, ort } from "../../src/pipelines/onnx-model.js";
import type { DiffusionPipeline } from "../../src/pipelines/types.js";
import { probeWebGpu } from "../../src/pipelines/webgpu-adapter.js";
import type { RgbImage } from "../../src/utils/png.js";
import { DiffusionWorker } from "../../src/workers/diffusion-worker.js";
import { ProgressLog, pixelDiff, request, twin } from "../batching/helpers.js";
import { MODEL_DIR } from "../helpers/model.js";
import { decodeB64Png } from "../helpers/server.js";
import { assertPixelsClose, expected, fixtureDir, subsample, type Layout } from "../models/fixtures.js";

// Every WebGPU session's fallback report, from the first model loaded on (it is logged once per model and process).
const fallbackLines: string[] = [];
process.on("warning", (w) => {
  if (w.name === "WebGpuFallback") fallbackLines.push(w.message);
});

const probe = await probeWebGpu();
const skip = probe.ok ? false : `no WebGPU adapter here (${probe.reason}); CI installs mesa-vulkan-drivers from bookworm-backports for one`;
// CI sets this where it installed the software adapter: a broken install fails there instead of skipping.
if (skip && process.env.OMNI_DIFFUSION_REQUIRE_WEBGPU === "1") throw new Error(`OMNI_DIFFUSION_REQUIRE_WEBGPU=1 but ${skip}`);
if (skip) console.warn(`\n*** SKIPPING the webgpu tests: ${skip} ***\n`);

const SAMPLERS = ["ddim", "euler_a", "dpmpp_2m"];

describe("webgpu", { skip, timeout: 300_000 }, () => {
  let cpu: DiffusionPipeline;
  let gpu: DiffusionPipeline;
  before(async () => {
    [cpu, gpu] = await Promise.all([
      loadPipeline(MODEL_DIR, { intraOpNumThreads: 1 }),
      loadPipeline(MODEL_DIR, { intraOpNumThreads: 1, device: "webgpu" }),
    ]);
    // Every test below relies on the WebGPU provider running the UNet, not a CPU session: its first run reports
    // where its nodes went.
    const warmup = await gpu.generate([request("warm-up", { numInferenceSteps: 1 })]);
    assert.deepEqual(warmup.errors, {});
    assert.ok(fallbackLines.some((l) => l.includes(`unet (${componentPath(MODEL_DIR, "unet")})`)), "the webgpu UNet's placement line");
  });
  after(async () => {
    await cpu?.release();
    await gpu?.release();
  });

  it(`the shipped model's images are within 2 levels of the CPU's (${SAMPLERS.join(", ")})`, async () => {
    for (const [k, scheduler] of SAMPLERS.entries()) {
      const init = { prompt: "a red circle on a blue background", seed: 11 + k, numInferenceSteps: 4, guidanceScale: 4, scheduler };
      const a = await cpu.generate([new OmniDiffusionRequest({ ...init, requestId: `cpu-${scheduler}` })]);
      const b = await gpu.generate([new OmniDiffusionRequest({ ...init, requestId: `gpu-${scheduler}` })]);
      assert.deepEqual([a.errors, b.errors], [{}, {}]);
      const diff = pixelDiff(a.output[0]!, b.output[0]!);
      assert.ok(diff <= 2, `${scheduler}: webgpu differs from cpu by ${diff} levels`);
    }
  });

  it("the nodes that fell back to the CPU are logged once per model, with their count and operator types", async () => {
    // The pipeline's UNet session logged on its first run; a second session on the same file (as after a
    // sleep/wake) runs without another line.
    const again = new OnnxModel("unet", componentPath(MODEL_DIR, "unet"), { intraOpNumThreads: 1, device: "webgpu" });
    const dims = { sample: [1, 3, 32, 32], timestep: [1], encoder_hidden_states: [1, 16, 128] } as Record<string, number[]>;
    await again.load();
    await again.run(Object.fromEntries(again.inputs.map((i) => [i.name, new ort.Tensor("float32", new Float32Array(dims[i.name]!.reduce((a, b) => a * b)), dims[i.name]!)])));
    await again.release();
    const unet = fallbackLines.filter((l) => l.includes("unet (") && l.includes(MODEL_DIR));
    assert.equal(unet.length, 1, fallbackLines.join("\n"));
    const m = /runs (\d+) of (\d+) nodes on the CPU \(([^)]+)\): (.+)\. onnxruntime/.exec(unet[0]!);
    assert.ok(m, unet[0]);
    const [cpuNodes, total] = [Number(m[1]), Number(m[2])];
    assert.ok(cpuNodes > 0 && cpuNodes < total, unet[0]);
    // The per-operator counts add up to the total on the CPU.
    const perOp = m[3]!.split(", ").map((s) => Number(s.split(" ").pop()));
    assert.equal(perOp.reduce((x, y) => x + y, 0), cpuNodes);
  });

  it("continuous batching: a request joining a running loop shares its UNet calls and gives the CPU's image", async () => {
    const worker = new DiffusionWorker(gpu, { rank: 0, batching: "continuous", maxBatchRows: 16 });
    try {
      const log = new ProgressLog();
      const long = request("long", { numInferenceSteps: 8, seed: 41, guidanceScale: 1 });
      const late = request("late", { numInferenceSteps: 3, seed: 42, guidanceScale: 1, prompt: "a green square on a white background" });
      const pLong = worker.generateOutput([long.toDict()], { onProgress: log.onProgress });
      await log.reached("long", 2);
      const pLate = worker.generateOutput([late.toDict()], { onProgress: log.onProgress });
      const [outLong, outLate] = await Promise.all([pLong, pLate]);
      assert.deepEqual([outLong.errors, outLate.errors], [{}, {}]);
      assert.ok(log.indexOf("late", 1) < log.indexOf("long", 8), "the late request ran while the long one was going");
      assert.ok(log.of("late").some((e) => e.batch?.requests === 2), `shared calls: ${JSON.stringify(log.of("late").map((e) => e.batch))}`);
      for (const [r, out] of [[long, outLong], [late, outLate]] as const) {
        const ref = await cpu.generate([twin(r, `${r.requestId}-cpu`)]);
        const diff = pixelDiff(out.imagesFor(r.requestId)[0]!, ref.output[0]!);
        assert.ok(diff <= 2, `${r.requestId}: webgpu (batched) differs from cpu (alone) by ${diff} levels`);
      }
    } finally {
      await worker.close();
    }
  });

  it("an abort mid-run stops the request at that step and leaves the worker idle", async () => {
    const worker = new DiffusionWorker(gpu, { rank: 0, batching: "continuous", maxBatchRows: 16 });
    try {
      let aborted = false;
      const r = request("stop-me", { numInferenceSteps: 8, seed: 5 });
      // Aborted from inside the step-2 progress callback: the loop cannot have moved on (no timing involved).
      const out: DiffusionOutput = await worker.generateOutput([r.toDict()], {
        onProgress: (p) => {
          if (p.step === 2 && !aborted) aborted = worker.abort("stop-me");
        },
      });
      assert.ok(aborted, "abort found the request");
      const err = out.errors["stop-me"];
      assert.ok(err instanceof AbortedError, `AbortedError, got ${err?.name}: ${err?.message}`);
      assert.ok((err.data.step as number) >= 2 && (err.data.step as number) < 8, `stopped at step ${String(err.data.step)}`);
      assert.equal(out.imagesFor("stop-me").length, 0);
      assert.equal(worker.getStats().inFlight, 0);
    } finally {
      await worker.close();
    }
  });
});

function rgbOf(b64: string): RgbImage {
  const png = decodeB64Png(b64);
  const data = new Uint8Array(png.width * png.height * 3);
  for (let p = 0; p < png.width * png.height; p++) for (let c = 0; c < 3; c++) data[p * 3 + c] = png.data[p * 4 + c]!;
  return { width: png.width, height: png.height, data };
}

describe("webgpu through serve (SD 1.5-layout fixtures)", { skip, timeout: 300_000 }, () => {
  for (const layout of ["sd15", "sd15-fp16"] as Layout[]) {
    it(`${layout}: a worker process on webgpu gives the torch reference's image`, async () => {
      const server = await startServer({
        port: 0,
        logger: false,
        engineConfig: { model: fixtureDir(layout), device: "webgpu", numGpus: 1, intraOpNumThreads: 1, allowNonNativeSizes: true },
      });
      try {
        const c = expected.layouts[layout].cases[0]!;
        const r = c.request;
        const body = { prompt: r.prompt, size: `${r.width}x${r.height}`, n: r.numOutputsPerPrompt ?? 1, num_inference_steps: r.numInferenceSteps, guidance_scale: r.guidanceScale, seed: r.seed, ...(r.negativePrompt ? { negative_prompt: r.negativePrompt } : {}) };
        const res = await fetch(`${server.url}/v1/images/generations`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
        assert.equal(res.status, 200, await res.clone().text());
        const json = (await res.json()) as { data: { b64_json: string }[] };
        assert.equal(json.data.length, c.latents.length);
        json.data.forEach((d, k) => assertPixelsClose(subsample(rgbOf(d.b64_json), c.image.stride), c.image.pixels[k]!, 2, `${layout} on webgpu, image ${k}`, 3));
      } finally {
        await server.close();
      }
    });
  }
});
