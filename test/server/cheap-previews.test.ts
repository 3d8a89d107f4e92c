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
    server = await startServer({ port: 0, engineConfig: { model: SD15, numGpus: 1, intraOpNumThreads: 1, allowNonNativeSizes: true }, logger: false });
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
});
