/**
 * "One conversion per boundary", counted: how many PNG encodes and decodes an image costs on the
 * multi-process path (worker → parent is raw RGB; the one encode is at the edge) and on the http/grpc path
 * (the worker server encodes once; the client keeps those bytes and serves them on without a re-encode).
 * The counters are per process: the worker side is counted on an in-process DiffusionWorker answering the
 * same `generate` call the worker process answers. The output side of issue 22 is counted first: the A1111
 * routes and the openai executor pass a remote peer's PNG on as it came, and a worker server encodes a
 * result once however many replies send it.
 */
import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { parseConfig } from "../../src/core/config.js";
import { DiffusionOutput, type DiffusionOutputTransfer } from "../../src/core/output.js";
import { OmniDiffusionRequest } from "../../src/core/request.js";
import { OmniRequestOutput } from "../../src/core/request-output.js";
import { OmniError, UnhealthyError } from "../../src/errors/omni-error.js";
import type { DiffusionExecutor } from "../../src/executors/base.js";
import { GrpcDiffusionExecutor } from "../../src/executors/grpc-executor.js";
import { HttpDiffusionExecutor } from "../../src/executors/http-executor.js";
import { MultiprocExecutor } from "../../src/executors/multiproc-executor.js";
import { OpenAIImagesExecutor } from "../../src/executors/openai-executor.js";
import { SageMakerDiffusionExecutor } from "../../src/executors/sagemaker-executor.js";
import { WorkerProcess } from "../../src/executors/shared/worker-process.js";
import { createClient, omniDiffusionService, toServiceError } from "../../src/protocol/grpc-codec.js";
import { PATHS } from "../../src/protocol/wire.js";
import type { ProgressMessage } from "../../src/protocol/worker-ipc.js";
import type { WorkerServer } from "../../src/server/worker/worker-server.js";
import { startServer, type OmniServer } from "../../src/index.js";
import { decodePng, encodePng, pngCounters, pngOf, resetPngCounters } from "../../src/utils/png.js";
import { DiffusionWorker } from "../../src/workers/diffusion-worker.js";
import { ENDPOINT, FakeSageMakerRuntime, useTestCredentials } from "../helpers/fake-sagemaker-runtime.js";
import { MODEL_DIR } from "../helpers/model.js";
import { startTestWorker } from "../helpers/worker-servers.js";

const T = 120_000;
const req = (i: number, extra: Partial<ConstructorParameters<typeof OmniDiffusionRequest>[0]> = {}) =>
  new OmniDiffusionRequest({ prompt: `a red circle on a blue background`, width: 32, height: 32, numInferenceSteps: 2, seed: 40 + i, ...extra });
const counts = () => ({ ...pngCounters });

describe("A1111 routes over an http executor: the worker server's PNG goes to the client as it came", { timeout: 3 * T }, () => {
  let worker: WorkerServer;
  let serve: OmniServer;
  before(async () => {
    worker = await startTestWorker({ httpPort: 0 });
    serve = await startServer({ port: 0, engineConfig: { executorClass: "http", executorOptions: { endpoints: [worker.httpUrl!] } }, logger: false });
  });
  after(async () => {
    await serve?.close();
    await worker?.close();
  });

  it("txt2img: one encode per image in all (the worker server's), no decode", async () => {
    resetPngCounters();
    const res = await fetch(`${serve.url}/sdapi/v1/txt2img`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: "a red circle on a blue background", seed: 3, batch_size: 2, steps: 2, width: 32, height: 32 }),
    });
    assert.equal(res.status, 200);
    const { images } = (await res.json()) as { images: string[] };
    // This process holds both servers: the worker server encodes each image once, serve sends those bytes on.
    assert.deepEqual(counts(), { encodes: 2, decodes: 0 });
    assert.equal(images.length, 2);
    for (const b64 of images) assert.equal(decodePng(Buffer.from(b64, "base64")).data.length, 32 * 32 * 3);
  });
});

describe("openai executor: the peer's PNG stays PNG until someone reads its pixels", { timeout: 3 * T }, () => {
  let peer: OmniServer;
  before(async () => {
    peer = await startServer({ port: 0, engineConfig: { numGpus: 1, intraOpNumThreads: 1 }, logger: false });
  });
  after(async () => {
    await peer?.close();
  });

  it("one encode per image in all (the peer's), no decode unless the pixels are read", async () => {
    const ex = new OpenAIImagesExecutor(parseConfig({ executorOptions: { endpoints: [peer.url!] } }));
    await ex.init();
    try {
      const r = req(10, { numOutputsPerPrompt: 2 });
      resetPngCounters();
      const out = await ex.executeModel([r]);
      assert.deepEqual(out.errors, {});
      assert.deepEqual(counts(), { encodes: 2, decodes: 0 }, "the peer encoded; the executor decoded nothing");
      const pngs = OmniRequestOutput.fromDiffusionOutput(r, out, () => new OmniError("no output")).pngs();
      assert.deepEqual(counts(), { encodes: 2, decodes: 0 }, "served on as the bytes that came in");
      const img = out.imagesFor(r.requestId)[1]!;
      assert.equal(img.data.length, 32 * 32 * 3);
      assert.equal(pngCounters.decodes, 1, "decoded on first read");
      assert.deepEqual(encodePng(img), pngs[1], "the PNG passed on is the one a fresh encode would make");
    } finally {
      await ex.close();
    }
  });
});

describe("worker server: a result is encoded once, however many replies send it", { timeout: 3 * T }, () => {
  let server: WorkerServer;
  before(async () => {
    server = await startTestWorker({ httpPort: 0, grpcPort: 0, sagemakerPort: 0 });
  });
  after(async () => {
    await server?.close();
  });

  const post = async (url: string, body: unknown, headers: Record<string, string> = {}) => {
    const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
    assert.equal(res.status, 200, await res.clone().text());
    return res;
  };
  type WireOutput = { output: { png_base64: string }[] };
  const pngsOf = (o: WireOutput) => o.output.map((i) => i.png_base64);

  it("HTTP, SSE, SageMaker (both shapes) and gRPC replies of one request id cost its images' encodes once", async () => {
    const dict = { request_id: "encode-once-worker", prompt: "a green square on a red background", width: 32, height: 32, num_inference_steps: 2, seed: 61, num_outputs_per_prompt: 2 };
    resetPngCounters();
    const first = ((await (await post(`${server.httpUrl}/v1/diffusion/generate`, { requests: [dict] })).json()) as { outputs: WireOutput[] }).outputs[0]!;
    assert.deepEqual(counts(), { encodes: 2, decodes: 0 }, "the first reply encodes each image once");
    const sent = pngsOf(first);
    // Retries of the same id (a lost response) are served from the worker's result cache, on every transport.
    const sse = await (await post(`${server.httpUrl}/v1/diffusion/generate`, { requests: [dict] }, { accept: "text/event-stream" })).text();
    const result = /event: result\ndata: (.*)\n/.exec(sse)?.[1];
    assert.ok(result, sse);
    assert.deepEqual(pngsOf((JSON.parse(result) as { outputs: WireOutput[] }).outputs[0]!), sent);
    const invocations = `${server.sagemakerUrl}/invocations`;
    assert.deepEqual(pngsOf(((await (await post(invocations, { requests: [dict] })).json()) as { outputs: WireOutput[] }).outputs[0]!), sent);
    assert.deepEqual(pngsOf((await (await post(invocations, [dict])).json()) as WireOutput), sent);
    assert.deepEqual(counts(), { encodes: 2, decodes: 0 }, "no reply encoded the images again");
    const grpc = new GrpcDiffusionExecutor(parseConfig({ executorOptions: { endpoints: [server.grpcAddress!] } }));
    await grpc.init();
    try {
      const r = new OmniDiffusionRequest({ requestId: dict.request_id, prompt: dict.prompt, width: 32, height: 32, numInferenceSteps: 2, seed: 61, numOutputsPerPrompt: 2 });
      const out = await grpc.executeModel([r]);
      assert.deepEqual(out.errors, {});
      assert.deepEqual(out.imagesFor(r.requestId).map((i) => pngOf(i).toString("base64")), sent);
    } finally {
      await grpc.close();
    }
    assert.deepEqual(counts(), { encodes: 2, decodes: 0 }, "nor did the gRPC one");
  });
});

describe("the worker answers generate in transfer form: no PNG in the worker", { timeout: 2 * T }, () => {
  let worker: DiffusionWorker;
  before(async () => {
    worker = await DiffusionWorker.create({ rank: 0, modelDir: MODEL_DIR, load: { intraOpNumThreads: 1 } });
  });
  after(async () => {
    await worker?.close();
  });

  it("takes validated requests (an img2img image raw) and returns raw RGB, encoding and decoding nothing", async () => {
    const image = { width: 32, height: 32, data: new Uint8Array(32 * 32 * 3).fill(200) };
    const requests = [req(1, { numOutputsPerPrompt: 2 }), req(2, { image, strength: 0.5 })];
    resetPngCounters();
    const reply = (await worker.call("generate", [requests.map((r) => r.toTransfer())], { transfer: true })) as DiffusionOutputTransfer;
    assert.deepEqual(counts(), { encodes: 0, decodes: 0 }, "the worker side of the boundary");
    assert.equal(reply.output.length, 3);
    for (const img of reply.output) {
      assert.ok(img.data instanceof Uint8Array);
      assert.equal(img.data.length, 32 * 32 * 3);
      assert.equal("png_base64" in img, false);
    }
    // The dict form (docs/wire-protocol.md, for callers of collectiveRpc("generate")) still answers PNG.
    const dict = (await worker.call("generate", [[req(3).toDict()]])) as { output: { png_base64: string }[] };
    assert.equal(typeof dict.output[0]!.png_base64, "string");
  });
});

describe("MultiprocExecutor: raw RGB across IPC, one encode at the edge", { timeout: 3 * T }, () => {
  let ex: MultiprocExecutor;
  before(async () => {
    ex = new MultiprocExecutor(parseConfig({ numGpus: 1, intraOpNumThreads: 1 }));
    await ex.init();
  });
  after(async () => {
    await ex?.close();
  });

  it("the parent decodes nothing; the edge encodes each image exactly once", async () => {
    const requests = [req(4, { numOutputsPerPrompt: 2 }), req(5)];
    resetPngCounters();
    const out = await ex.executeModel(requests);
    assert.deepEqual(counts(), { encodes: 0, decodes: 0 }, "nothing between the worker and the caller");
    assert.equal(out.output.length, 3);
    for (const img of out.output) assert.equal(img.data.length, 32 * 32 * 3);
    const pngs = requests.flatMap((r) => OmniRequestOutput.fromDiffusionOutput(r, out, () => new OmniError("no output")).pngs());
    assert.equal(pngs.length, 3);
    assert.deepEqual(counts(), { encodes: 3, decodes: 0 }, "one encode per image, where the bytes leave");
  });

  it("previews arrive raw, and one IPC message carries every request's progress of a step", async () => {
    // The WorkerProcess of rank 0, watched on its IPC channel.
    const proc = new WorkerProcess(0, { rank: 0, modelDir: MODEL_DIR, load: { intraOpNumThreads: 1 } });
    const messages: ProgressMessage[] = [];
    proc.child.on("message", (m: { type?: string }) => {
      if (m?.type === "progress") messages.push(m as ProgressMessage);
    });
    try {
      await proc.ready;
      const call = async (requests: OmniDiffusionRequest[], previewEvery?: Record<string, number>) => {
        const seen: { requestId: string; step: number; previewBytes: number }[] = [];
        messages.length = 0;
        resetPngCounters();
        const reply = await proc.call("generate", [requests.map((r) => r.toTransfer())], previewEvery ? { transfer: true, previewEvery } : { transfer: true }, {
          deadline: Date.now() + T,
          onProgress: (p) => seen.push({ requestId: p.requestId, step: p.step, previewBytes: p.preview?.[0]?.data.length ?? 0 }),
        });
        const out = DiffusionOutput.fromTransfer(reply);
        assert.deepEqual(counts(), { encodes: 0, decodes: 0 });
        assert.equal(out.output.length, requests.length);
        return seen;
      };
      const three = () => [req(6), req(7), req(8)].map((r) => new OmniDiffusionRequest({ ...r, numInferenceSteps: 3 }));
      // Without previews nothing awaits between the requests' reports of a step: one message per step.
      const seen = await call(three());
      assert.equal(seen.length, 9, "3 requests × 3 steps");
      assert.equal(messages.flatMap((m) => m.items).length, 9);
      assert.ok(messages.length <= 3, `at most one progress message per step, got ${messages.length} for 3 steps`);
      for (const m of messages) assert.equal(new Set(m.items.map((i) => i.requestId)).size, 3, "each message carries all three requests");
      // Previews of the steps before the last (the last step's image is the output itself), raw RGB.
      const withPreview = three();
      const previews = (await call(withPreview, { [withPreview[0]!.requestId]: 1 }))
        .filter((s) => s.requestId === withPreview[0]!.requestId && s.previewBytes > 0)
        .map((s) => s.previewBytes);
      assert.ok(previews.length >= 1, "previews were sent");
      assert.ok(previews.every((n) => n === 32 * 32 * 3), `raw 32x32 RGB previews, got ${previews}`);
    } finally {
      await proc.stop(5_000);
    }
  });
});

describe("http and grpc: the worker server encodes once, the client passes the PNG on", { timeout: 4 * T }, () => {
  let server: WorkerServer;
  before(async () => {
    server = await startTestWorker({ httpPort: 0, grpcPort: 0 });
  });
  after(async () => {
    await server?.close();
  });

  for (const kind of ["http", "grpc"] as const) {
    it(`${kind}: one encode per image in all, no decode unless the pixels are read`, async () => {
      const config = parseConfig({ executorOptions: { endpoints: [kind === "http" ? server.httpUrl! : server.grpcAddress!] } });
      const ex = kind === "http" ? new HttpDiffusionExecutor(config) : new GrpcDiffusionExecutor(config);
      await ex.init();
      try {
        const r = req(9, { numOutputsPerPrompt: 2 });
        resetPngCounters();
        // This process holds the worker server (the one encode) and the client (no decode).
        const out = await ex.executeModel([r]);
        assert.deepEqual(counts(), { encodes: 2, decodes: 0 });
        const pngs = OmniRequestOutput.fromDiffusionOutput(r, out, () => new OmniError("no output")).pngs();
        assert.deepEqual(counts(), { encodes: 2, decodes: 0 }, "served on as the bytes that came in");
        // The pixels are still there, decoded on first read, and they are what the PNG says.
        const img = out.imagesFor(r.requestId)[0]!;
        assert.equal(img.data.length, 32 * 32 * 3);
        assert.equal(pngCounters.decodes, 1);
        assert.deepEqual(decodePng(pngs[0]!).data, img.data);
        assert.deepEqual(pngOf(img), pngs[0]);
        assert.deepEqual(encodePng(img), pngs[0], "the PNG passed on is the one a fresh encode would make");
      } finally {
        await ex.close();
      }
    });
  }
});

/** A proxy in front of a worker's HTTP port that answers the first generate call with a 503 (a retryable failure), then forwards. */
async function failFirstHttpProxy(upstream: string): Promise<{ url: string; generateCalls: () => number; close: () => Promise<void> }> {
  let calls = 0;
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    if (req.method === "POST" && req.url === PATHS.generate && ++calls === 1) {
      res.writeHead(503, { "content-type": "application/json" }).end(JSON.stringify({ error: "warming up" }));
      return;
    }
    const body = chunks.length ? Buffer.concat(chunks) : undefined;
    const headers = Object.fromEntries(Object.entries(req.headers).filter(([k]) => k === "content-type" || k === "authorization" || k === "accept")) as Record<string, string>;
    const up = await fetch(`${upstream}${req.url}`, { method: req.method, headers, body });
    res.writeHead(up.status, { "content-type": up.headers.get("content-type") ?? "application/json" }).end(Buffer.from(await up.arrayBuffer()));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    generateCalls: () => calls,
    close: () => new Promise((resolve) => (server.closeAllConnections(), server.close(() => resolve()))),
  };
}

/** A gRPC proxy in front of a worker's gRPC port that fails the first Generate with UNAVAILABLE (retryable), then forwards every unary call. */
async function failFirstGrpcProxy(upstream: string): Promise<{ address: string; generateCalls: () => number; close: () => Promise<void> }> {
  const { service } = omniDiffusionService();
  const client = createClient(upstream);
  let calls = 0;
  const forward = (method: string) => (call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
    if (method === "Generate" && ++calls === 1) return cb(toServiceError(new UnhealthyError("warming up")) as grpc.ServiceError, null);
    (client as unknown as Record<string, (req: unknown, md: grpc.Metadata, cb: grpc.requestCallback<unknown>) => void>)[method]!(call.request, call.metadata, (err, res) => cb(err, res));
  };
  const server = new grpc.Server();
  server.addService(service, Object.fromEntries(["Generate", "CollectiveRpc", "Health", "Abort"].map((m) => [m, forward(m)])));
  const port = await new Promise<number>((resolve, reject) => server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  return {
    address: `127.0.0.1:${port}`,
    generateCalls: () => calls,
    close: async () => {
      client.close();
      await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    },
  };
}

describe("edits through http, grpc and sagemaker, retried: the init image is encoded once per batch", { timeout: 6 * T }, () => {
  let server: WorkerServer;
  before(async () => {
    useTestCredentials();
    server = await startTestWorker({ httpPort: 0, grpcPort: 0, sagemakerPort: 0 });
  });
  after(async () => {
    await server?.close();
  });

  const image = { width: 32, height: 32, data: new Uint8Array(32 * 32 * 3).map((_, i) => (i * 7) % 256) };

  /**
   * This process holds the client and the worker server. The first attempt fails before it reaches the
   * worker; the retry succeeds. In all: one encode of the init image (the client's, outside the retry loop),
   * one decode of it (the worker's intake; the idempotency fingerprint hashes the raw bytes, no re-encode),
   * one encode of the output (the worker's), and no decode of the output on the client.
   */
  async function expectOneEncode(ex: DiffusionExecutor, attempts: () => number): Promise<void> {
    await ex.init();
    try {
      const r = req(10, { image, strength: 0.5 });
      resetPngCounters();
      const out = await ex.executeModel([r]);
      assert.equal(attempts(), 2, "the first attempt failed and was retried");
      assert.deepEqual(out?.errors, {});
      assert.equal(out!.imagesFor(r.requestId).length, 1);
      assert.deepEqual(counts(), { encodes: 2, decodes: 1 });
    } finally {
      await ex.close();
    }
  }

  it("http: a 503 on the first attempt", async () => {
    const proxy = await failFirstHttpProxy(server.httpUrl!);
    try {
      await expectOneEncode(new HttpDiffusionExecutor(parseConfig({ executorOptions: { endpoints: [proxy.url], backoffInitialMs: 1 } })), proxy.generateCalls);
    } finally {
      await proxy.close();
    }
  });

  it("grpc: UNAVAILABLE on the first attempt", async () => {
    const proxy = await failFirstGrpcProxy(server.grpcAddress!);
    try {
      await expectOneEncode(new GrpcDiffusionExecutor(parseConfig({ executorOptions: { endpoints: [proxy.address], backoffInitialMs: 1 } })), proxy.generateCalls);
    } finally {
      await proxy.close();
    }
  });

  it("sagemaker: throttled on the first attempt (and the payload size check encodes nothing more)", async () => {
    const aws = new FakeSageMakerRuntime(() => server.sagemakerUrl!);
    await aws.listen();
    try {
      const config = parseConfig({ executorOptions: { endpointName: ENDPOINT, endpointUrl: aws.url, targetVariant: "AllTraffic", backoffInitialMs: 1 } });
      const ex = new SageMakerDiffusionExecutor(config);
      // Armed after init: its start-up calls (getStats) are not the generate call under test.
      const generateCalls = () => aws.invocations.length - baseline;
      let baseline = 0;
      await ex.init();
      baseline = aws.invocations.length;
      aws.faults.push("throttle");
      await expectOneEncode(ex, generateCalls);
    } finally {
      await aws.close();
    }
  });
});
