/**
 * PNG decompression bombs and oversized images at every entry point that decodes a PNG (issue 21 items 1
 * and 2): `serve`'s POST /v1/images/edits (image and mask), A1111 img2img (init image and mask), the worker's
 * HTTP, SageMaker and gRPC ports (`fromDict`), images from a remote OpenAI-compatible peer, and the CLI's
 * --image. Each answers a 400-style typed error naming the field; none inflates the bomb (which would take
 * hundreds of MB: the assertions are on the answers, not on memory or time). The pixel cap is the model's
 * (2x its largest size per side: 64x64 for tiny-shapes), the same on serve and on the worker.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { parseConfig } from "../../src/core/config.js";
import { OmniDiffusionRequest } from "../../src/core/request.js";
import { TransportError } from "../../src/errors/omni-error.js";
import { OpenAIImagesExecutor } from "../../src/executors/openai-executor.js";
import { createClient, omniDiffusionService } from "../../src/protocol/grpc-codec.js";
import { startServer, type OmniServer } from "../../src/index.js";
import type { WorkerServer } from "../../src/server/worker/worker-server.js";
import { encodePng } from "../../src/utils/png.js";
import { bombPng, pngWith, zeroStream } from "../helpers/png-bombs.js";
import { startTestWorker } from "../helpers/worker-servers.js";

const T = 120_000;
const KEY = "bomb-key";
/** 512 KiB files: unbounded, each would inflate to 512 MB. */
const BOMB = bombPng(512 * 1024);
const FLAT_BOMB = bombPng(512 * 1024, { width: 32, height: 32, interlaced: false });
/** A small file declaring 20,000² pixels. */
const HUGE = pngWith({ width: 20_000, height: 20_000 }, zeroStream(1024));
const png = (w: number, h: number) => encodePng({ width: w, height: h, data: new Uint8Array(w * h * 3).fill(90) });
const CAP_MESSAGE = /more than the 4096 pixels an upload may have here \(64x64: 2x the largest size served, 32x32, per side\)/;

describe("PNG bombs and oversized images at every entry point", { timeout: 10 * T }, () => {
  let serve: OmniServer;
  let worker: WorkerServer;
  before(async () => {
    [serve, worker] = await Promise.all([
      startServer({ port: 0, apiKey: KEY, engineConfig: { numGpus: 1, intraOpNumThreads: 1 }, logger: false }),
      // The same engine limits as serve's (native sizes only), so the same cap.
      startTestWorker({ httpPort: 0, grpcPort: 0, sagemakerPort: 0, apiKey: KEY, engine: { allowNonNativeSizes: false } }),
    ]);
  });
  after(async () => {
    await Promise.allSettled([serve?.close(), worker?.close()]);
  });

  async function edit(files: Record<string, Buffer>, fields: Record<string, string> = {}): Promise<{ status: number; error: { code: string; param: string | null; message: string } }> {
    const form = new FormData();
    form.set("prompt", "a red circle on a blue background");
    form.set("num_inference_steps", "1");
    for (const [name, value] of Object.entries(fields)) form.set(name, value);
    for (const [name, bytes] of Object.entries(files)) form.set(name, new Blob([bytes], { type: "image/png" }), `${name}.png`);
    const res = await fetch(`${serve.url}/v1/images/edits`, { method: "POST", headers: { authorization: `Bearer ${KEY}` }, body: form });
    return { status: res.status, ...((await res.json()) as { error: { code: string; param: string | null; message: string } }) };
  }

  it("serve POST /v1/images/edits: bombs in image or mask are a 400 invalid_image naming the part", { timeout: T }, async () => {
    for (const [files, param] of [[{ image: BOMB }, "image"], [{ image: FLAT_BOMB }, "image"], [{ image: png(32, 32), mask: BOMB }, "mask"]] as const) {
      const r = await edit(files);
      assert.equal(r.status, 400, JSON.stringify(r));
      assert.deepEqual([r.error.code, r.error.param], ["invalid_image", param]);
      assert.match(r.error.message, /decompression bomb/);
    }
  });

  it("serve POST /v1/images/edits: more pixels than the model's cap is a 400 limit_exceeded naming the cap; the cap itself is accepted", { timeout: T }, async () => {
    for (const image of [HUGE, png(65, 64)]) {
      const r = await edit({ image });
      assert.equal(r.status, 400, JSON.stringify(r));
      assert.deepEqual([r.error.code, r.error.param], ["limit_exceeded", "image"]);
      assert.match(r.error.message, CAP_MESSAGE);
    }
    // A 64x64 upload is resized to a size the model serves.
    const ok = await edit({ image: png(64, 64) }, { size: "32x32" });
    assert.equal(ok.status, 200, JSON.stringify(ok));
  });

  it("A1111 img2img: bombs and oversized init images or masks are a 400 naming the field", { timeout: T }, async () => {
    const post = async (body: Record<string, unknown>) => {
      const res = await fetch(`${serve.url}/sdapi/v1/img2img`, {
        method: "POST",
        headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
        body: JSON.stringify({ prompt: "a red circle", steps: 1, ...body }),
      });
      return { status: res.status, text: await res.text() };
    };
    const b64 = (b: Buffer) => b.toString("base64");
    for (const [body, field, re] of [
      [{ init_images: [b64(BOMB)] }, "init_images", /decompression bomb/],
      [{ init_images: [`data:image/png;base64,${b64(FLAT_BOMB)}`] }, "init_images", /decompression bomb/],
      [{ init_images: [b64(png(32, 32))], mask: b64(BOMB) }, "mask", /decompression bomb/],
      [{ init_images: [b64(HUGE)] }, "init_images", CAP_MESSAGE],
    ] as const) {
      const r = await post(body);
      assert.equal(r.status, 400, r.text);
      assert.match(r.text, new RegExp(`${field}: `), r.text);
      assert.match(r.text, re);
    }
  });

  it("worker HTTP and SageMaker ports: a bomb as image or mask_image is a 400 naming requests.0.<field>; the same pixel cap as serve", { timeout: T }, async () => {
    const req = (extra: Record<string, unknown>) => ({ requests: [{ prompt: "a red circle", num_inference_steps: 1, ...extra }] });
    const cases = [
      [req({ image: BOMB.toString("base64") }), "requests.0.image", /decompression bomb/],
      [req({ image: png(32, 32).toString("base64"), mask_image: FLAT_BOMB.toString("base64") }), "requests.0.mask_image", /decompression bomb/],
      [req({ image: png(65, 64).toString("base64") }), "requests.0.image", CAP_MESSAGE],
    ] as const;
    for (const url of [`${worker.httpUrl}/v1/diffusion/generate`, `${worker.sagemakerUrl}/invocations`]) {
      for (const [body, field, re] of cases) {
        const res = await fetch(url, { method: "POST", headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" }, body: JSON.stringify(body) });
        const text = await res.text();
        assert.equal(res.status, 400, `${url}: ${text}`);
        assert.match(text, new RegExp(`"field":"${field.replace(/\./g, "\\.")}"`), text);
        assert.match(text, re);
      }
    }
  });

  it("worker gRPC Generate: a bomb as image bytes is INVALID_ARGUMENT saying so", { timeout: T }, async () => {
    const client = createClient(worker.grpcAddress!);
    try {
      const md = new grpc.Metadata();
      md.set("authorization", `Bearer ${KEY}`);
      const bytes = omniDiffusionService().service.Generate!.requestSerialize({ requests: [{ request_id: "b", prompt: "a red circle", image: BOMB }] });
      const err = await new Promise<grpc.ServiceError | null>((resolve) =>
        client.makeUnaryRequest("/omni_diffusion.v1.OmniDiffusion/Generate", (b: Buffer) => b, (b: Buffer) => b, bytes, md, { deadline: Date.now() + 60_000 }, (e) => resolve(e ?? null)),
      );
      assert.equal(err?.code, grpc.status.INVALID_ARGUMENT, String(err));
      assert.match(err!.details, /requests\.0: image: refused: .*decompression bomb/);
    } finally {
      client.close();
    }
  });

  describe("images from a remote OpenAI-compatible peer", () => {
    let peer: Server;
    let url: string;
    before(async () => {
      // A peer that answers every generation with a bomb (or, for "oversized", a 64x64 image for a 32x32 ask).
      peer = createServer(async (req, res) => {
        res.setHeader("content-type", "application/json");
        if (req.method === "GET") return res.end(JSON.stringify({ object: "list", data: [{ id: "tiny", object: "model" }] }));
        const chunks: Buffer[] = [];
        for await (const c of req) chunks.push(c as Buffer);
        const body = JSON.parse(Buffer.concat(chunks).toString()) as { prompt: string };
        const image = body.prompt === "oversized" ? png(64, 64) : BOMB;
        res.end(JSON.stringify({ created: 1, data: [{ b64_json: image.toString("base64") }] }));
      });
      await new Promise<void>((resolve) => peer.listen(0, "127.0.0.1", resolve));
      url = `http://127.0.0.1:${(peer.address() as AddressInfo).port}`;
    });
    after(async () => {
      peer.closeAllConnections();
      await new Promise<void>((resolve) => peer.close(() => resolve()));
    });

    it("a bomb, or a bigger image than asked for, fails the request with a TransportError naming the peer", { timeout: T }, async () => {
      const ex = new OpenAIImagesExecutor(parseConfig({ executorOptions: { endpoints: [url], apiKey: KEY } }));
      await ex.init();
      try {
        for (const [prompt, re] of [["a red circle", /data\.0\.b64_json: refused: .*decompression bomb/], ["oversized", /data\.0\.b64_json: 64x64 is 4096 pixels, more than the 1024/]] as const) {
          const r = new OmniDiffusionRequest({ prompt, width: 32, height: 32 });
          const out = await ex.executeModel([r]);
          const err = out.errors[r.requestId];
          assert.ok(err instanceof TransportError, `${prompt}: ${String(err)}`);
          assert.match(err.message, new RegExp(`^${url.replace(/[.:/]/g, "\\$&")}`));
          assert.match(err.message, re);
        }
      } finally {
        await ex.close();
      }
    });
  });

  it("the CLI's --image: a bomb is one line naming the file, before the model loads", { timeout: T }, () => {
    const dir = mkdtempSync(join(tmpdir(), "omni-bomb-"));
    try {
      const file = join(dir, "bomb.png");
      writeFileSync(file, BOMB);
      const cli = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));
      const r = spawnSync(process.execPath, ["--import", "tsx", cli, "generate", "a red circle", "--image", file, "--out", join(dir, "out.png")], { encoding: "utf8", timeout: T });
      assert.equal(r.status, 1, r.stderr);
      assert.match(r.stderr, /bomb\.png.*decompression bomb/);
      assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
