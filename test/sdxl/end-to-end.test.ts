/**
 * The SDXL fixtures end to end: each through `omni-diffusion serve` (a real child process; OpenAI route with the
 * SDXL body fields, A1111's txt2img), the engine's multiproc executor with a reference request batched with a
 * companion in shared UNet calls, continuous batching with a request joining mid-way, and the `generate` CLI.
 * Images must be the torch reference's (training/fixtures/make_sdxl_fixtures.py).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { OmniDiffusionRequest } from "../../src/core/request.js";
import { startServer } from "../../src/index.js";
import { loadPipeline } from "../../src/pipelines/load.js";
import { decodePng, type RgbImage } from "../../src/utils/png.js";
import { DiffusionWorker } from "../../src/workers/diffusion-worker.js";
import { ProgressLog } from "../batching/helpers.js";
import { spawnServe } from "../helpers/serve-cli.js";
import { assertPixelsClose, subsample, type ExpectedCase } from "../models/fixtures.js";
import { sdxlDir, sdxlExpected, type SdxlLayout } from "./fixtures.js";

const CLI = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));
const WITH_CASES: SdxlLayout[] = ["sdxl", "sdxl-fp16", "sdxl-turbo", "sdxl-ensemble"];
const tmp = mkdtempSync(join(tmpdir(), "omni-sdxl-e2e-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

const SDXL_ONLY = new Set(["prompt2", "negativePrompt2", "originalSize", "cropsCoordsTopLeft", "targetSize", "aestheticScore", "negativeAestheticScore", "denoisingEnd"]);
const rgbOf = (b64: string): RgbImage => decodePng(Buffer.from(b64, "base64"));

/** The reference request as an OpenAI images body, SDXL fields in diffusers' spelling. */
function openAIBody(c: ExpectedCase): Record<string, unknown> {
  const r = c.request as ExpectedCase["request"] & Record<string, unknown>;
  const snake: Record<string, string> = { prompt2: "prompt_2", negativePrompt: "negative_prompt", originalSize: "original_size", cropsCoordsTopLeft: "crops_coords_top_left", targetSize: "target_size",
    aestheticScore: "aesthetic_score", negativeAestheticScore: "negative_aesthetic_score", denoisingEnd: "denoising_end", numInferenceSteps: "num_inference_steps", guidanceScale: "guidance_scale", seed: "seed", prompt: "prompt" };
  const body: Record<string, unknown> = { size: `${r.width}x${r.height}`, n: r.numOutputsPerPrompt ?? 1 };
  for (const [k, v] of Object.entries(r)) if (snake[k]) body[snake[k]!] = v;
  return body;
}

describe("SDXL end to end", { timeout: 600_000 }, () => {
  for (const layout of WITH_CASES) {
    it(`${layout}: serve (OpenAI route with the SDXL fields, A1111 txt2img) gives the reference images`, async () => {
      const flags = ["--port", "0", "--workers", "1", "--threads", "1", "--no-ui", "--allow-non-native-sizes", "--data-dir", mkdtempSync(join(tmp, "data-"))];
      const { child, url } = await spawnServe([...flags, "--model", sdxlDir(layout)]);
      try {
        for (const c of sdxlExpected.layouts[layout].cases) {
          const res = await fetch(`${url}/v1/images/generations`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(openAIBody(c)) });
          assert.equal(res.status, 200, `${layout}/${c.name}: ${await res.clone().text()}`);
          const body = (await res.json()) as { data: { b64_json: string }[] };
          assert.equal(body.data.length, c.latents.length);
          body.data.forEach((d, k) => assertPixelsClose(subsample(rgbOf(d.b64_json), c.image.stride), c.image.pixels[k]!, 2, `${layout}/${c.name} (serve) image ${k}`, 3));
        }
        // A1111's body has no SDXL fields: the reference case that needs none, or (the ensemble's) a size check.
        const plain = sdxlExpected.layouts[layout].cases.find((k) => Object.keys(k.request).every((f) => !SDXL_ONLY.has(f)));
        const c = plain ?? sdxlExpected.layouts[layout].cases[0]!;
        const a1111 = await fetch(`${url}/sdapi/v1/txt2img`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ prompt: c.request.prompt, negative_prompt: c.request.negativePrompt, width: c.request.width, height: c.request.height, steps: c.request.numInferenceSteps, cfg_scale: c.request.guidanceScale, seed: c.request.seed }),
        });
        assert.equal(a1111.status, 200, await a1111.clone().text());
        const images = ((await a1111.json()) as { images: string[] }).images;
        // An absent negative prompt stays absent through A1111's route, so force_zeros_for_empty_prompt applies as in diffusers.
        if (plain) assertPixelsClose(subsample(rgbOf(images[0]!), c.image.stride), c.image.pixels[0]!, 2, `${layout} (a1111)`, 3);
        else assert.deepEqual([rgbOf(images[0]!).width, rgbOf(images[0]!).height], [c.request.width, c.request.height]);
        // A field the model would not read is a 400 naming it.
        const bad = await fetch(`${url}/v1/images/generations`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ prompt: "x", size: "64x64", num_inference_steps: 1, aesthetic_score: 7 }) });
        if (layout !== "sdxl-ensemble") {
          assert.equal(bad.status, 400, await bad.clone().text());
          assert.match(((await bad.json()) as { error: { message: string; param: string } }).error.param, /aesthetic_score/);
        } else assert.equal(bad.status, 200, await bad.clone().text());
      } finally {
        child.kill();
      }
    });
  }

  it("sdxl: the multiproc engine batches a reference request with a companion in shared UNet calls", async () => {
    const server = await startServer({
      port: 0,
      logger: false,
      engineConfig: { model: sdxlDir("sdxl"), numGpus: 1, intraOpNumThreads: 1, batching: "request", batchWindowMs: 50, allowNonNativeSizes: true },
    });
    try {
      const c = sdxlExpected.layouts.sdxl.cases[1]!; // prompt_2, a negative prompt, size conditioning
      const log = new ProgressLog();
      const ref = new OmniDiffusionRequest({ ...c.request, requestId: "ref" });
      const companion = new OmniDiffusionRequest({ ...c.request, prompt: "a yellow star", prompt2: null, originalSize: null, seed: 999, requestId: "companion" });
      const [out] = await Promise.all([ref, companion].map((r) => server.engine.generate(r, { onProgress: log.onProgress })));
      assert.ok(log.of("ref").some((e) => (e.batch?.requests ?? 0) >= 2), `shared a UNet call: ${JSON.stringify(log.of("ref").map((e) => e.batch))}`);
      out!.images.forEach((img, k) => assertPixelsClose(subsample(img, c.image.stride), c.image.pixels[k]!, 2, `sdxl (batched) image ${k}`, 3));
    } finally {
      await server.close();
    }
  });

  for (const layout of ["sdxl", "sdxl-ensemble"] as const) {
    it(`${layout}: continuous batching, a reference request joining a running loop`, async () => {
      const pipeline = await loadPipeline(sdxlDir(layout), { intraOpNumThreads: 1 });
      const worker = new DiffusionWorker(pipeline, { rank: 0, batching: "continuous", maxBatchRows: 16 });
      try {
        const c = sdxlExpected.layouts[layout].cases[0]!;
        const log = new ProgressLog();
        const long = new OmniDiffusionRequest({ ...c.request, prompt: "a small house near the river", seed: 500, numInferenceSteps: 12, requestId: "long" });
        const ref = new OmniDiffusionRequest({ ...c.request, requestId: "ref" });
        const pLong = worker.generateOutput([long.toDict()], { onProgress: log.onProgress });
        await log.reached("long", 2);
        const pRef = worker.generateOutput([ref.toDict()], { onProgress: log.onProgress });
        const [outLong, outRef] = await Promise.all([pLong, pRef]);
        assert.deepEqual(outLong.errors, {});
        assert.deepEqual(outRef.errors, {});
        assert.ok(log.indexOf("ref", 1) < log.indexOf("long", 12), "the reference request ran while the long one was still going");
        outRef.imagesFor("ref").forEach((img, k) => assertPixelsClose(subsample(img, c.image.stride), c.image.pixels[k]!, 2, `${layout} (continuous) image ${k}`, 3));
      } finally {
        await worker.close();
      }
    });
  }

  it("the generate CLI on SDXL and SDXL-Turbo writes the reference image", async () => {
    for (const layout of ["sdxl", "sdxl-turbo"] as const) {
      const c = sdxlExpected.layouts[layout].cases[0]!;
      const r = c.request;
      const file = join(tmp, `${layout}.png`);
      const args = [
        ...["--import", "tsx", CLI, "generate", r.prompt, "--model", sdxlDir(layout), "--out", file, "--executor", "uniproc", "--threads", "1", "--allow-non-native-sizes"],
        ...["--size", `${r.width}x${r.height}`, "--steps", String(r.numInferenceSteps), "--guidance", String(r.guidanceScale), "--seed", String(r.seed)],
      ];
      const { stdout } = await promisify(execFile)(process.execPath, args, { timeout: 120_000 });
      assert.match(stdout, new RegExp(`wrote .*${layout}\\.png \\(${r.width}x${r.height}, seed ${r.seed}\\)`));
      assertPixelsClose(subsample(decodePng(readFileSync(file)), c.image.stride), c.image.pixels[0]!, 2, `${layout} (generate)`, 3);
    }
  });
});
