/**
 * Every layout fixture end to end: through the OpenAI-compatible server (`serve`) and, in the same engine, the
 * multiproc executor with a reference request batched with another request in its UNet calls. Images must still
 * be the torch reference's (training/fixtures/make_fixtures.py). The CLI's `generate` is in generate-cli.test.ts.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { OmniDiffusionRequest } from "../../src/core/request.js";
import { startServer } from "../../src/index.js";
import type { RgbImage } from "../../src/utils/png.js";
import { ProgressLog } from "../batching/helpers.js";
import { decodeB64Png } from "../helpers/server.js";
import { LAYOUTS, assertPixelsClose, expected, fixtureDir, subsample, type ExpectedCase } from "./fixtures.js";

function rgbOf(b64: string): RgbImage {
  const png = decodeB64Png(b64);
  const data = new Uint8Array(png.width * png.height * 3);
  for (let p = 0; p < png.width * png.height; p++) for (let c = 0; c < 3; c++) data[p * 3 + c] = png.data[p * 4 + c]!;
  return { width: png.width, height: png.height, data };
}

function httpBody(c: ExpectedCase): Record<string, unknown> {
  const r = c.request;
  return {
    prompt: r.prompt,
    size: `${r.width}x${r.height}`,
    n: r.numOutputsPerPrompt ?? 1,
    num_inference_steps: r.numInferenceSteps,
    guidance_scale: r.guidanceScale,
    seed: r.seed,
    ...(r.negativePrompt ? { negative_prompt: r.negativePrompt } : {}),
  };
}

describe("layout fixtures end to end (serve + multiproc executor, batched)", { timeout: 300_000 }, () => {
  for (const layout of LAYOUTS) {
    it(`${layout}: the server and the engine's batched UNet calls give the reference images`, async () => {
      // `request` batching: requests submitted together are batched deterministically (the window gathers them).
      // The reference sizes are small (cheap on CPU), so non-native sizes are allowed.
      const server = await startServer({
        port: 0,
        logger: false,
        engineConfig: { model: fixtureDir(layout), numGpus: 1, intraOpNumThreads: 1, batching: "request", batchWindowMs: 50, allowNonNativeSizes: true },
      });
      try {
        const cases = expected.layouts[layout].cases;
        // 1. HTTP, as a client would call it.
        for (const c of cases) {
          const res = await fetch(`${server.url}/v1/images/generations`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(httpBody(c)) });
          assert.equal(res.status, 200, `${layout}/${c.name}: ${await res.clone().text()}`);
          const body = (await res.json()) as { data: { b64_json: string }[] };
          assert.equal(body.data.length, c.latents.length);
          body.data.forEach((d, k) => assertPixelsClose(subsample(rgbOf(d.b64_json), c.image.stride), c.image.pixels[k]!, 2, `${layout}/${c.name} (http) image ${k}`, 3));
        }
        // 2. The first reference request together with a companion of another prompt and seed: one batch, shared UNet calls.
        const c = cases[0]!;
        const log = new ProgressLog();
        const ref = new OmniDiffusionRequest({ ...c.request, requestId: "ref" });
        const companion = new OmniDiffusionRequest({ ...c.request, prompt: "a yellow star on a black background", seed: 999, requestId: "companion" });
        const [out] = await Promise.all([ref, companion].map((r) => server.engine.generate(r, { onProgress: log.onProgress })));
        assert.ok(
          log.of("ref").some((e) => (e.batch?.requests ?? 0) >= 2),
          `the reference request shared a UNet call: ${JSON.stringify(log.of("ref").map((e) => e.batch))}`,
        );
        out!.images.forEach((img, k) => assertPixelsClose(subsample(img, c.image.stride), c.image.pixels[k]!, 2, `${layout}/${c.name} (batched) image ${k}`, 3));
        if (layout === "sd15-fixed") {
          // 3. Another size is a 400 naming the one size the export serves.
          const res = await fetch(`${server.url}/v1/images/generations`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ prompt: "x", size: "256x256", num_inference_steps: 1 }) });
          const body = (await res.json()) as { error: { message: string } };
          assert.equal(res.status, 400, JSON.stringify(body));
          assert.match(body.error.message, /512x512 only/);
        }
      } finally {
        await server.close();
      }
    });
  }
});
