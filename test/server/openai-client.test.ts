import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import OpenAI from "openai";
import { startServer, type OmniServer } from "../../src/index.js";
import { decodeB64Png, parseMetrics } from "../helpers/server.js";

const KEY = "test-key-123";

describe("the official openai client against omni-diffusion serve", () => {
  let server: OmniServer;
  let client: OpenAI;
  before(async () => {
    server = await startServer({ port: 0, apiKey: KEY, engineConfig: { numGpus: 1, intraOpNumThreads: 1, allowNonNativeSizes: true }, logger: false });
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: KEY, maxRetries: 0, timeout: 60_000 });
  });
  after(() => server.close());

  test("images.generate returns b64 PNGs of the requested size, one per n", async () => {
    const { data: res, response } = await client.images
      .generate({ prompt: "a red circle on a blue background", size: "64x32", n: 2, num_inference_steps: 2, seed: 11 } as OpenAI.ImageGenerateParamsNonStreaming)
      .withResponse();
    assert.equal(typeof res.created, "number");
    assert.equal(res.data?.length, 2);
    const pngs = res.data!.map((d) => {
      assert.equal(d.revised_prompt, null);
      const png = decodeB64Png(d.b64_json!);
      assert.deepEqual([png.width, png.height], [64, 32], "width x height as requested");
      return png;
    });
    assert.notDeepEqual(pngs[0]!.data, pngs[1]!.data, "the two images use seeds 11 and 12");
    assert.match(response.headers.get("x-request-id") ?? "", /^req-/);
    assert.match(response.headers.get("server-timing") ?? "", /denoise;dur=[\d.]+/);
  });

  test("without size the model's native size comes back", async () => {
    const res = await client.images.generate({ prompt: "a yellow star", num_inference_steps: 2 } as OpenAI.ImageGenerateParamsNonStreaming);
    const png = decodeB64Png(res.data![0]!.b64_json!);
    assert.deepEqual([png.width, png.height], [32, 32]);
  });

  test("stream: true sends partial images while denoising, then the completed image", async () => {
    const stream = await client.images.generate({
      prompt: "a white cross on a green background",
      size: "32x32",
      stream: true,
      partial_images: 2,
      num_inference_steps: 6,
      seed: 3,
    } as OpenAI.ImageGenerateParamsStreaming);
    const events: OpenAI.ImageGenStreamEvent[] = [];
    for await (const ev of stream) events.push(ev);
    assert.deepEqual(
      events.map((e) => (e.type === "image_generation.partial_image" ? `partial ${e.partial_image_index}` : e.type)),
      ["partial 0", "partial 1", "image_generation.completed"],
    );
    for (const e of events) {
      const png = decodeB64Png(e.b64_json);
      assert.deepEqual([png.width, png.height], [32, 32]);
      assert.equal(e.output_format, "png");
    }
  });

  test("stream with partial_images 0 sends just the completed image, one per n", async () => {
    const stream = await client.images.generate({ prompt: "a red circle", size: "32x32", n: 2, stream: true, num_inference_steps: 2 } as OpenAI.ImageGenerateParamsStreaming);
    const types: string[] = [];
    for await (const ev of stream) types.push(ev.type);
    assert.deepEqual(types, ["image_generation.completed", "image_generation.completed"]);
  });

  test("response_format url serves the PNG from /v1/images/files/{id} until it expires", async () => {
    const res = await client.images.generate({ prompt: "a blue square", size: "32x32", response_format: "url", num_inference_steps: 2 } as OpenAI.ImageGenerateParamsNonStreaming);
    // Relative without --public-url: never built from the client's Host header (issue 9 finding 7).
    const url = `${server.url}${res.data![0]!.url!}`;
    assert.ok(res.data![0]!.url!.startsWith("/v1/images/files/img_"), url);
    const unauth = await fetch(url);
    assert.equal(unauth.status, 401, "file downloads need the API key too");
    const file = await fetch(url, { headers: { authorization: `Bearer ${KEY}` } });
    assert.equal(file.status, 200);
    assert.equal(file.headers.get("content-type"), "image/png");
    assert.match(file.headers.get("cache-control") ?? "", /max-age=\d+/);
    const png = decodeB64Png(Buffer.from(await file.arrayBuffer()).toString("base64"));
    assert.deepEqual([png.width, png.height], [32, 32]);
  });

  test("models.list and models.retrieve show the served model", async () => {
    const list = await client.models.list();
    assert.deepEqual(list.data.map((m) => m.id), ["tiny-shapes"]);
    const m = await client.models.retrieve("tiny-shapes");
    assert.equal(m.owned_by, "omni-diffusion");
  });

  test("errors surface as the SDK's typed errors with status, param and code", async () => {
    await assert.rejects(
      client.images.generate({ prompt: "x", size: "33x32" } as OpenAI.ImageGenerateParamsNonStreaming),
      (err: unknown) => {
        assert.ok(err instanceof OpenAI.BadRequestError, String(err));
        assert.equal(err.status, 400);
        assert.equal(err.param, "size");
        assert.equal(err.code, "invalid_size");
        assert.match(err.message, /multiples of 8/);
        return true;
      },
    );
    const wrongKey = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "nope", maxRetries: 0 });
    await assert.rejects(wrongKey.models.list(), (err: unknown) => err instanceof OpenAI.AuthenticationError && err.status === 401);
  });

  test("/health answers without a key; /metrics has request, stage, batch and executor series", async () => {
    const health = await fetch(`${server.url}/health`);
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { status: "ok", model: "tiny-shapes" });
    const res = await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${KEY}` } });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /text\/plain/);
    const m = parseMetrics(await res.text());
    assert.ok((m.get('omni_http_requests_total{method="POST",route="/v1/images/generations",status_code="200"}') ?? 0) >= 5);
    assert.ok((m.get('omni_stage_duration_seconds_count{stage="denoise"}') ?? 0) >= 5);
    assert.ok((m.get("omni_batch_size_count") ?? 0) >= 1);
    assert.ok((m.get('omni_generation_latency_seconds_count{outcome="ok"}') ?? 0) >= 5);
    assert.equal(m.get('omni_executor_endpoint_state{endpoint="rank-0",state="ready"}'), 1);
    assert.equal(m.get('omni_worker_restarts_total{endpoint="rank-0"}'), 0);
    assert.equal(m.get("omni_queue_depth"), 0);
    assert.equal(m.get("omni_executor_healthy"), 1);
  });
});
