/**
 * OpenAIImagesExecutor against real servers that follow the OpenAI images API: omni-diffusion's own
 * `serve` (the conformance suite runs against it), and a small recording server that checks exactly which
 * fields the executor sends.
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { parseConfig } from "../../src/core/config.js";
import { OmniDiffusionRequest } from "../../src/core/request.js";
import { AbortedError, UnknownMethodError, ValidationError } from "../../src/errors/omni-error.js";
import { OpenAIImagesExecutor } from "../../src/executors/openai-executor.js";
import { startServer, type OmniServer } from "../../src/server/omni-server.js";
import { encodePng } from "../../src/utils/png.js";
import { runExecutorConformance } from "../../src/testing/executor-conformance.js";

const T = 120_000;
const KEY = "sk-test";

describe("OpenAIImagesExecutor against omni-diffusion serve", { timeout: 10 * T }, () => {
  let server: OmniServer;
  before(async () => {
    server = await startServer({ port: 0, apiKey: KEY, engineConfig: { numGpus: 1, intraOpNumThreads: 1 }, logger: false });
  });
  after(async () => {
    await server?.close();
  });

  runExecutorConformance("openai", () => ({ executorClass: "openai", executorOptions: { endpoints: [`${server.url}/v1`], apiKey: KEY } }), { expectedRanks: 1 });

  it("forwards an inpainting edit to /v1/images/edits: the unmasked pixels come back exactly", { timeout: T }, async () => {
    const ex = new OpenAIImagesExecutor(parseConfig({ executorOptions: { endpoints: [server.url!], apiKey: KEY } }));
    await ex.init();
    try {
      // A 32x32 init image (left half red, right half blue); the mask repaints the left half only.
      const image = { width: 32, height: 32, data: new Uint8Array(32 * 32 * 3) };
      const mask = { width: 32, height: 32, data: new Uint8Array(32 * 32) };
      for (let i = 0; i < 32 * 32; i++) {
        const left = i % 32 < 16;
        image.data.set(left ? [220, 20, 20] : [20, 20, 220], i * 3);
        mask.data[i] = left ? 255 : 0;
      }
      const r = new OmniDiffusionRequest({ prompt: "a yellow circle on a green background", image, mask, strength: 0.9, seed: 5, numInferenceSteps: 6 });
      const out = await ex.executeModel([r]);
      assert.deepEqual(out.errors, {});
      const [img] = out.imagesFor(r.requestId);
      assert.ok(img, "one image back");
      let repainted = 0;
      for (let i = 0; i < 32 * 32; i++) {
        const px = [...img.data.subarray(i * 3, i * 3 + 3)];
        if (i % 32 >= 16) assert.deepEqual(px, [20, 20, 220], `kept pixel ${i} changed`);
        else if (px.join() !== "220,20,20") repainted++;
      }
      assert.ok(repainted > 0, "the masked half was repainted");
    } finally {
      await ex.close();
    }
  });

  it("has no RPC but an emulated ping", { timeout: T }, async () => {
    const ex = new OpenAIImagesExecutor(parseConfig({ executorOptions: { endpoints: [server.url!], apiKey: KEY } }));
    await ex.init();
    try {
      await assert.rejects(ex.collectiveRpc("getStats"), UnknownMethodError);
      const [pong] = (await ex.collectiveRpc("ping")) as { rank: number; pid: number }[];
      assert.deepEqual([pong!.rank, pong!.pid], [0, -1]);
    } finally {
      await ex.close();
    }
  });
});

describe("OpenAIImagesExecutor field mapping", { timeout: 2 * T }, () => {
  let fake: Server;
  let url: string;
  const bodies: Record<string, unknown>[] = [];
  const headers: Record<string, unknown>[] = [];
  let hold: (() => void) | null = null;
  let hanging: () => void = () => undefined;

  before(async () => {
    fake = createServer(async (req, res) => {
      res.setHeader("content-type", "application/json");
      if (req.method === "GET" && req.url === "/v1/models") return res.end(JSON.stringify({ object: "list", data: [{ id: "tiny", object: "model" }] }));
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const body = JSON.parse(Buffer.concat(chunks).toString()) as { n: number; size?: string; prompt: string };
      bodies.push(body);
      headers.push(req.headers);
      if (body.prompt === "hang") {
        hanging();
        await new Promise<void>((resolve) => (hold = resolve));
        return res.end("{}");
      }
      if (body.size === "24x24") {
        res.writeHead(400);
        return res.end(JSON.stringify({ error: { message: "Invalid size '24x24'", type: "invalid_request_error", param: "size", code: "invalid_size" } }));
      }
      const [w, h] = (body.size ?? "16x16").split("x").map(Number) as [number, number];
      const png = encodePng({ width: w, height: h, data: new Uint8Array(w * h * 3).fill(200) }).toString("base64");
      res.end(JSON.stringify({ created: 1, data: Array.from({ length: body.n }, () => ({ b64_json: png })) }));
    });
    await new Promise<void>((resolve) => fake.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(fake.address() as AddressInfo).port}`;
  });
  after(async () => {
    hold?.();
    fake.closeAllConnections();
    await new Promise<void>((resolve) => fake.close(() => resolve()));
  });

  it("maps n, size, seed, steps, guidance and negative prompt, and decodes b64_json", { timeout: T }, async () => {
    const ex = new OpenAIImagesExecutor(parseConfig({ executorOptions: { endpoints: [url], apiKey: KEY, model: "tiny" } }));
    await ex.init();
    try {
      const r = new OmniDiffusionRequest({
        prompt: "a white triangle",
        negativePrompt: "blurry",
        width: 40,
        height: 24,
        numInferenceSteps: 7,
        guidanceScale: 3.5,
        seed: 1234,
        numOutputsPerPrompt: 3,
      });
      const out = await ex.executeModel([r]);
      assert.deepEqual(bodies.at(-1), {
        prompt: "a white triangle",
        n: 3,
        response_format: "b64_json",
        seed: 1234,
        model: "tiny",
        size: "40x24",
        num_inference_steps: 7,
        guidance_scale: 3.5,
        negative_prompt: "blurry",
      });
      assert.equal(headers.at(-1)!.authorization, `Bearer ${KEY}`);
      const images = out.imagesFor(r.requestId);
      assert.deepEqual(images.map((i) => [i.index, i.seed, i.width, i.height]), [[0, 1234, 40, 24], [1, 1235, 40, 24], [2, 1236, 40, 24]]);
      assert.equal(images[0]!.data[0], 200);

      const unseeded = new OmniDiffusionRequest({ prompt: "a black circle" });
      const out2 = await ex.executeModel([unseeded]);
      const sent = bodies.at(-1)!;
      assert.deepEqual(Object.keys(sent).sort(), ["model", "n", "prompt", "response_format", "seed"]);
      assert.equal(out2.imagesFor(unseeded.requestId)[0]!.seed, sent.seed, "a drawn seed is reported on the image");

      const badSize = new OmniDiffusionRequest({ prompt: "x", width: 24, height: 24 });
      const trajectory = new OmniDiffusionRequest({ prompt: "x", returnTrajectoryLatents: true });
      const oneSided = new OmniDiffusionRequest({ prompt: "x", width: 32 });
      const calls = bodies.length;
      const out3 = await ex.executeModel([badSize, trajectory, oneSided]);
      assert.equal(bodies.length - calls, 1, "only the request the API can express was sent");
      const e = out3.errors[badSize.requestId];
      assert.ok(e instanceof ValidationError && e.field === "width" && e.data.param === "size", `${e?.name} ${e?.message}`);
      assert.ok(out3.errors[trajectory.requestId] instanceof ValidationError);
      assert.equal((out3.errors[oneSided.requestId] as ValidationError).field, "height");
    } finally {
      await ex.close();
    }
  });

  it("abortRequest cancels the request's call", { timeout: T }, async () => {
    const ex = new OpenAIImagesExecutor(parseConfig({ executorOptions: { endpoints: [url] } }));
    await ex.init();
    try {
      const r = new OmniDiffusionRequest({ prompt: "hang" });
      const arrived = new Promise<void>((resolve) => (hanging = resolve));
      const pending = ex.executeModel([r]);
      await arrived;
      await ex.abortRequest(r.requestId);
      const out = await pending;
      assert.ok(out.errors[r.requestId] instanceof AbortedError, `AbortedError, got ${out.errors[r.requestId]?.name}`);
    } finally {
      hold?.();
      await ex.close();
    }
  });
});
