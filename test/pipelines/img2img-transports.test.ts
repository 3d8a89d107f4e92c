/**
 * Edits through every path a request travels: the proto codec round trip, worker processes (multiproc), a
 * real worker server over HTTP and over gRPC, and a Redis queue worker (skipped, loudly, without redis-server). Each gives the image the in-process pipeline gives, and an
 * inpainting request keeps its unmasked pixels byte-exact after the PNG round trips.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { GeneratedImage } from "../../src/core/output.js";
import { OmniDiffusionRequest, type OmniDiffusionRequestInit } from "../../src/core/request.js";
import { DiffusionEngine } from "../../src/engine/engine.js";
import { ValidationError } from "../../src/errors/omni-error.js";
import { loadPipeline } from "../../src/pipelines/load.js";
import type { DiffusionPipeline } from "../../src/pipelines/types.js";
import { requestFromProto, requestToProto } from "../../src/protocol/proto-codec.js";
import type { WorkerServer } from "../../src/server/worker/worker-server.js";
import { encodeMaskPng, encodePng, type MaskImage } from "../../src/utils/png.js";
import { pixelDiff } from "../batching/helpers.js";
import { MODEL_DIR } from "../helpers/model.js";
import { startTestWorker } from "../helpers/worker-servers.js";
import { QueueWorkerChild, TestRedis, redisMissing, uniqueQueue } from "../fleet/helpers.js";

const T = 180_000;

/** A diagonal mask: repaint below the diagonal, keep above it. */
const MASK: MaskImage = { width: 32, height: 32, data: Uint8Array.from({ length: 1024 }, (_, p) => ((p % 32) < Math.floor(p / 32) ? 255 : 0)) };

describe("edits through the codecs, worker processes and worker servers", { timeout: 4 * T }, () => {
  let pipe: DiffusionPipeline;
  let init: GeneratedImage;
  let server: WorkerServer;
  const noRedis = redisMissing();
  let redis: TestRedis | undefined;
  let queueWorker: QueueWorkerChild | undefined;
  const queue = uniqueQueue("edits");
  const edits = (): OmniDiffusionRequest[] => [
    new OmniDiffusionRequest({ requestId: "img2img", prompt: "a red circle on a blue background", seed: 5, numInferenceSteps: 6, image: init, strength: 0.6 }),
    new OmniDiffusionRequest({ requestId: "inpaint", prompt: "a yellow square on a black background", seed: 6, numInferenceSteps: 6, image: init, mask: MASK }),
  ];
  const expected = new Map<string, GeneratedImage>();
  before(async () => {
    pipe = await loadPipeline(MODEL_DIR, { intraOpNumThreads: 1 });
    init = (await pipe.generate([new OmniDiffusionRequest({ prompt: "a green star on a white background", seed: 3, numInferenceSteps: 6 })])).output[0]!;
    for (const r of edits()) expected.set(r.requestId, (await pipe.generate([r])).output[0]!);
    server = await startTestWorker({ httpPort: 0, grpcPort: 0 });
    if (noRedis) console.error(`SKIPPED the queue path of the edit tests: ${noRedis}`);
    else {
      redis = await TestRedis.start();
      queueWorker = await QueueWorkerChild.start(redis.url, queue);
    }
  });
  after(async () => {
    await queueWorker?.stop();
    await redis?.close();
    await server?.close();
    await pipe?.release();
  });

  /** The reply matches the in-process image and, for the inpainting request, keeps every unmasked pixel. */
  function check(id: string, img: GeneratedImage | undefined, via: string): void {
    assert.ok(img, `${via}: ${id} has an image`);
    assert.ok(pixelDiff(img, expected.get(id)!) <= 2, `${via}: ${id} as in process (diff ${pixelDiff(img, expected.get(id)!)})`);
    if (id !== "inpaint") return;
    for (let p = 0; p < MASK.data.length; p++) {
      if (MASK.data[p] === 0) for (let c = 0; c < 3; c++) assert.equal(img.data[p * 3 + c], init.data[p * 3 + c], `${via}: kept pixel ${p}`);
    }
  }

  it("the proto codec carries image, mask and strength (PNG bytes) and leaves them unset for text-to-image", () => {
    for (const r of edits()) {
      const m = requestToProto(r.toDict() as Parameters<typeof requestToProto>[0]);
      assert.ok(m.image && m.image.subarray(1, 4).toString() === "PNG", "image travels as PNG bytes");
      const back = OmniDiffusionRequest.fromDict(requestFromProto(m));
      assert.deepEqual(back.image, r.image ? { width: 32, height: 32, data: init.data } : null);
      assert.deepEqual(back.mask, r.mask);
      assert.equal(back.strength, r.strength);
    }
    const plain = requestToProto(new OmniDiffusionRequest({ prompt: "x" }).toDict() as Parameters<typeof requestToProto>[0]);
    assert.equal(plain.image, undefined);
    // proto-loader fills unset bytes with empty Buffers: those mean "no image".
    const back = OmniDiffusionRequest.fromDict(requestFromProto({ ...plain, image: Buffer.alloc(0), mask_image: Buffer.alloc(0) }));
    assert.equal(back.image, null);
    assert.equal(back.mask, null);
  });

  it("over HTTP, a mask without an image or a strength out of range is a 400 naming the field", { timeout: T }, async () => {
    const mask = encodeMaskPng(MASK).toString("base64");
    for (const [body, field] of [
      [{ prompt: "a red circle", mask_image: mask }, "mask_image"],
      [{ prompt: "a red circle", image: encodePng(init).toString("base64"), strength: 1.5 }, "strength"],
      [{ prompt: "a red circle", image: "bm90IGEgcG5n" }, "image"],
    ] as const) {
      const res = await fetch(`${server.httpUrl}/v1/diffusion/generate`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ requests: [body] }) });
      const json = (await res.json()) as { error?: { data?: { field?: string } } };
      assert.equal(res.status, 400, JSON.stringify(json));
      assert.match(JSON.stringify(json), new RegExp(`"field":"(requests\\.0\\.)?${field}"`), JSON.stringify(json));
    }
  });

  const engines: [string, () => Partial<Parameters<typeof DiffusionEngine.create>[0]>][] = [
    ["multiproc", () => ({ numGpus: 1, intraOpNumThreads: 1, allowNonNativeSizes: true })],
    ["http", () => ({ executorClass: "http", allowNonNativeSizes: true, executorOptions: { endpoints: [server.httpUrl!] } })],
    ["grpc", () => ({ executorClass: "grpc", allowNonNativeSizes: true, executorOptions: { endpoints: [`grpc://${server.grpcAddress!}`] } })],
  ];
  if (!noRedis) engines.push(["queue", () => ({ executorClass: "queue", allowNonNativeSizes: true, executorOptions: { url: redis!.url, queue } })]);
  for (const [via, config] of engines) {
    it(`through ${via}: the in-process images, unmasked pixels kept, a bad edit refused with its field`, { timeout: T }, async () => {
      const engine = await DiffusionEngine.create(config() as Parameters<typeof DiffusionEngine.create>[0]);
      try {
        const outs = await Promise.all(edits().map((r) => engine.generate(r)));
        for (const out of outs) check(out.requestId, out.images[0], via);
        // 40x32 is a size the model serves, but not the image's: the pipeline refuses it, naming the image.
        const wrongSize: OmniDiffusionRequestInit = { prompt: "a red circle", image: init, width: 40, height: 32, numInferenceSteps: 2 };
        await assert.rejects(engine.generate(wrongSize), (e: unknown) => e instanceof ValidationError && e.data.field === "image" && /image is 32x32/.test(e.message));
        // Without width/height the image's size is the request's, and the engine's size limits see it.
        const big = { width: 4096, height: 4096, data: new Uint8Array(4096 * 4096 * 3) };
        await assert.rejects(engine.generate({ prompt: "a red circle", image: big, numInferenceSteps: 2 }), /4096x4096/);
      } finally {
        await engine.close();
      }
    });
  }
});
