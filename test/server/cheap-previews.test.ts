/**
 * Streamed previews of a latent model take the cheap path end to end: through `serve`'s OpenAI route (which
 * the playground streams from too) a 128×128 request on the SD 1.5 layout fixture gets 16×16 partial images
 * (the latent approximation: one pixel per latent cell) and a 128×128 final image; the events say each size.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import OpenAI from "openai";
import { startServer, type OmniServer } from "../../src/index.js";
import { decodeB64Png } from "../helpers/server.js";

const SD15 = join(import.meta.dirname, "..", "fixtures", "models", "sd15");

describe("previews through serve on a latent model", { timeout: 300_000 }, () => {
  let server: OmniServer;
  let client: OpenAI;
  before(async () => {
    server = await startServer({ port: 0, limits: { maxSteps: 1_000 }, engineConfig: { model: SD15, numGpus: 1, intraOpNumThreads: 1, allowNonNativeSizes: true }, logger: false });
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0, timeout: 120_000 });
  });
  after(() => server?.close());

  test("partial images are the latent approximation (1/8 of the side), the completed image full size", async () => {
    const stream = await client.images.generate({
      prompt: "a photo of a cat",
      size: "128x128",
      stream: true,
      partial_images: 2,
      num_inference_steps: 4,
      guidance_scale: 1,
      seed: 5,
    } as OpenAI.ImageGenerateParamsStreaming);
    const events: OpenAI.ImageGenStreamEvent[] = [];
    for await (const ev of stream) events.push(ev);
    assert.deepEqual(
      events.map((e) => e.type),
      ["image_generation.partial_image", "image_generation.partial_image", "image_generation.completed"],
    );
    for (const e of events) {
      const png = decodeB64Png(e.b64_json);
      const side = e.type === "image_generation.completed" ? 128 : 16;
      assert.deepEqual([png.width, png.height], [side, side], e.type);
      assert.equal(e.size, `${side}x${side}`, `${e.type} says its own size`);
    }
  });

  test("A1111's progress shows the latest preview as current_image: the approximation, then interrupt returns it", async () => {
    const base = server.url!;
    let requestId: string | null = null;
    // A1111 previews every steps/10 steps: past step 101 of 1000 one has been made. The job runs until interrupted.
    const previewed = new Promise<void>((resolve) => {
      const sub = server.engine.onStep((e) => {
        requestId ??= e.requestId;
        if (e.requestId === requestId && e.step >= 101) {
          sub.dispose();
          resolve();
        }
      });
    });
    const job = fetch(`${base}/sdapi/v1/txt2img`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: "a photo of a cat", width: 128, height: 128, steps: 1000, sampler_name: "Euler", cfg_scale: 1, seed: 4 }),
    });
    // A job that ends before its 101st step (refused, failed) fails the test instead of leaving it waiting.
    await Promise.race([previewed, job.then(async (r) => assert.fail(`the job ended early: ${r.status} ${await r.clone().text()}`))]);
    const p = (await (await fetch(`${base}/sdapi/v1/progress`)).json()) as { progress: number; current_image: string | null };
    assert.ok(p.progress > 0 && p.progress < 1, `progress ${p.progress}`);
    const current = decodeB64Png(p.current_image!);
    assert.deepEqual([current.width, current.height], [16, 16], "one pixel per latent cell: the approximation, not the full VAE");
    assert.equal((await fetch(`${base}/sdapi/v1/interrupt`, { method: "POST" })).status, 200);
    const res = await job;
    assert.equal(res.status, 200);
    const body = (await res.json()) as { images: string[] };
    assert.deepEqual(body.images.map((b) => decodeB64Png(b).width), [16], "the interrupted job returns its latest preview");
  });
});
