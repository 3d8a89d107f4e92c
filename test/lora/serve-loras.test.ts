/**
 * LoRAs per request through `serve` (issue 24): a real server over a real worker process with `lorasDir`. The
 * OpenAI `loras` field and A1111's `<lora:name:w>` prompt tags fuse the LoRA in the worker's model cache, and the
 * image lands on torch's reference with the LoRA merged; base and LoRA requests at once each get their own weights.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { startServer, type OmniServer } from "../../src/server/omni-server.js";
import { decodePng } from "../../src/utils/png.js";
import { assertPixelsClose } from "../models/fixtures.js";
import { LORA_FIXTURES, LORA_MODEL, loraExpected } from "./fixtures.js";

const KEY = "test-key";
const req = loraExpected.request;

describe("LoRAs per request through serve", { timeout: 300_000 }, () => {
  let server: OmniServer;
  const post = async (path: string, body: unknown) => {
    const res = await fetch(`${server.url}${path}`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${KEY}` }, body: JSON.stringify(body) });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  };
  /** The RGB pixels of an OpenAI generation with these LoRAs. */
  const openai = async (loras?: { name: string; scale: number }[]) => {
    const r = await post("/v1/images/generations", {
      prompt: req.prompt,
      size: `${req.width}x${req.height}`,
      num_inference_steps: req.numInferenceSteps,
      guidance_scale: req.guidanceScale,
      seed: req.seed,
      ...(loras ? { loras } : {}),
    });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    return Uint8Array.from(decodePng(Buffer.from((r.json.data as { b64_json: string }[])[0]!.b64_json, "base64")).data);
  };

  before(async () => {
    server = await startServer({ port: 0, apiKey: KEY, logger: false, engineConfig: { model: LORA_MODEL, lorasDir: LORA_FIXTURES, numGpus: 1, intraOpNumThreads: 1, batching: "continuous", allowNonNativeSizes: true } });
  });
  after(() => server?.close());

  it("OpenAI `loras`: the image matches torch with the LoRA merged; base and LoRA requests at once keep their own weights", async () => {
    const [withLora, base] = await Promise.all([openai([{ name: "style-kohya", scale: 0.8 }]), openai()]);
    assertPixelsClose(withLora, loraExpected.cases["kohya@0.8"]!.pixels, 2, "kohya@0.8", 3);
    assertPixelsClose(base, loraExpected.cases.base!.pixels, 2, "base", 3);
  });

  it("A1111 `<lora:name:w>` tags fuse the LoRA and leave the prompt's text", async () => {
    const r = await post("/sdapi/v1/txt2img", { prompt: `<lora:style-kohya:0.8>${req.prompt}`, width: req.width, height: req.height, steps: req.numInferenceSteps, cfg_scale: req.guidanceScale, seed: req.seed });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    const pixels = Uint8Array.from(decodePng(Buffer.from((r.json.images as string[])[0]!, "base64")).data);
    assertPixelsClose(pixels, loraExpected.cases["kohya@0.8"]!.pixels, 2, "a1111 kohya@0.8", 3);
  });

  it("a LoRA the folder does not have is refused, naming it", async () => {
    const r = await post("/v1/images/generations", { prompt: req.prompt, size: `${req.width}x${req.height}`, loras: [{ name: "no-such-lora", scale: 1 }] });
    assert.ok(r.status === 404 || r.status === 400, `status ${r.status}: ${JSON.stringify(r.json)}`);
    assert.match(JSON.stringify(r.json), /no-such-lora/);
  });
});
