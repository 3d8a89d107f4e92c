/**
 * The fuzz suite (issue 9): seeded hostile requests against every HTTP route of `serve`, the worker's HTTP
 * API and SageMaker port, and every gRPC method. Asserts no 5xx (nor internal error in a body), no crash
 * (the servers run in this process; worker processes keep their pids), no hang (each request has a guard),
 * and that every server still serves a valid request afterwards.
 *
 * `FUZZ_SEED=<n>` replays a run (`random` picks one), `FUZZ_COUNT=<n>` sets the requests per target.
 * `bench/fuzz.ts` is the long mode.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { startServer, type OmniServer } from "../../src/index.js";
import { createClient } from "../../src/protocol/grpc-codec.js";
import type { WorkerServer } from "../../src/server/worker/worker-server.js";
import { startTestWorker } from "../helpers/worker-servers.js";
import { HOSTILE_PNGS, makeRng } from "./hostile.js";
import { PROTOTYPE_KEYS, fuzzGrpc, fuzzHttp, sagemakerRoutes, serveRoutes, workerRoutes, type Finding } from "./runner.js";

const INTERNAL = /OMNI_ERR_INTERNAL|"code":"internal"/;

const SEED = process.env.FUZZ_SEED === "random" ? Math.floor(Math.random() * 2 ** 31) : Number(process.env.FUZZ_SEED ?? 20_261_130);
const COUNT = Number(process.env.FUZZ_COUNT ?? 80);
const HANG_MS = 30_000;
const KEY = "fuzz-key";
const BODY_LIMIT = 64 * 1024;
const HTTP = { requestTimeoutMs: 5_000, headersTimeoutMs: 5_000 };

console.log(`fuzz: FUZZ_SEED=${SEED} FUZZ_COUNT=${COUNT}`);

const report = (findings: Finding[]) =>
  findings.map((f) => `#${f.index} ${f.target}: ${f.problem}\n    sent: ${f.sent}`).join("\n") + `\n(replay with FUZZ_SEED=${SEED} FUZZ_COUNT=${COUNT})`;

const pids = async (rpc: (m: string) => Promise<unknown>) => ((await rpc("ping")) as { pid: number }[]).map((p) => p.pid);

describe(`fuzz (seed ${SEED})`, { timeout: 20 * 60_000 }, () => {
  let serve: OmniServer;
  let worker: WorkerServer;
  before(async () => {
    [serve, worker] = await Promise.all([
      startServer({
        port: 0,
        apiKey: KEY,
        logger: false,
        http: HTTP,
        limits: { maxN: 2, maxSteps: 4, maxWidth: 64, maxHeight: 64, maxBodyBytes: BODY_LIMIT },
        engineConfig: { numGpus: 1, intraOpNumThreads: 1 },
      }),
      startTestWorker({ httpPort: 0, grpcPort: 0, sagemakerPort: 0, apiKey: KEY, bodyLimitBytes: BODY_LIMIT, http: HTTP, engine: { limits: { maxSteps: 4, maxWidth: 64, maxHeight: 64, maxOutputsPerPrompt: 2 } } }),
    ]);
  });
  after(async () => {
    await Promise.allSettled([serve?.close(), worker?.close()]);
  });

  it("serve: no 5xx, no hang, and it still serves", async () => {
    const before = await pids((m) => serve.engine.collectiveRpc(m));
    const findings = await fuzzHttp(makeRng(SEED), { name: "serve", url: serve.url!, key: KEY, maxBodyBytes: BODY_LIMIT, routes: serveRoutes(), refusesCrossSite: true }, COUNT, HANG_MS);
    assert.deepEqual(findings, [], report(findings));
    assert.deepEqual(await pids((m) => serve.engine.collectiveRpc(m)), before, "no worker process died");
    const res = await fetch(`${serve.url}/v1/images/generations`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${KEY}` },
      body: JSON.stringify({ prompt: "a red circle on a blue background", size: "32x32", num_inference_steps: 2 }),
    });
    assert.equal(res.status, 200);
  });

  it("serve: every prototype name in every name field is a 4xx, and every cross-site POST a 403 (issue 21)", async () => {
    const send = (path: string, body: unknown, headers: Record<string, string> = {}) =>
      fetch(`${serve.url}${path}`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${KEY}`, ...headers }, body: JSON.stringify(body) });
    const problems: string[] = [];
    const check = async (what: string, res: Response, ok: (status: number) => boolean) => {
      const text = await res.text();
      if (!ok(res.status) || INTERNAL.test(text)) problems.push(`${what}: ${res.status} ${text.slice(0, 200)}`);
    };
    const is4xx = (s: number) => s >= 400 && s < 500;
    for (const name of PROTOTYPE_KEYS) {
      const a1111 = { prompt: "a red circle", steps: 1, send_images: false };
      await check(`txt2img sampler_name=${name}`, await send("/sdapi/v1/txt2img", { ...a1111, sampler_name: name }), is4xx);
      await check(`txt2img sampler_name="${name} Karras"`, await send("/sdapi/v1/txt2img", { ...a1111, sampler_name: `${name} Karras` }), is4xx);
      await check(`txt2img sampler_index=${name}`, await send("/sdapi/v1/txt2img", { ...a1111, sampler_index: name }), is4xx);
      await check(`generations scheduler=${name}`, await send("/v1/images/generations", { prompt: "a red circle", num_inference_steps: 1, scheduler: name }), is4xx);
      if (name !== "__proto__") {
        await check(`options {${name}}`, await send("/sdapi/v1/options", { [name]: 1 }), is4xx);
        await check(`generations {${name}: 1}`, await send("/v1/images/generations", { prompt: "a red circle", [name]: 1 }), is4xx);
      }
      await check(`interrupt id_task=${name}`, await send("/sdapi/v1/interrupt", { id_task: name }), (s) => s === 200);
      await check(`progress id_task=${name}`, await fetch(`${serve.url}/sdapi/v1/progress?id_task=${name}`, { headers: { authorization: `Bearer ${KEY}` } }), (s) => s === 200);
    }
    for (const route of serveRoutes().filter((r) => r.method === "POST")) {
      for (const origin of ["http://evil.example", "null", "http://127.0.0.1:1"]) {
        await check(`cross-site POST ${route.path} from ${origin}`, await send(route.path, route.body?.(makeRng(SEED)) ?? {}, { origin, "sec-fetch-site": "cross-site" }), (s) => s === 403);
      }
    }
    assert.deepEqual(problems, []);
  });

  it("every hostile PNG (bombs, 4096², 16-bit, ...) at every image field of serve and the worker is a 4xx; a valid one is served (issue 21)", async () => {
    const problems: string[] = [];
    const auth = { authorization: `Bearer ${KEY}` };
    const valid = HOSTILE_PNGS["valid 32x32"]!();
    const record = async (what: string, res: Response, expectOk: boolean) => {
      const text = await res.text();
      const good = expectOk ? res.status === 200 : res.status >= 400 && res.status < 500;
      if (!good || INTERNAL.test(text)) problems.push(`${what}: ${res.status} ${text.slice(0, 200)}`);
    };
    for (const [name, make] of Object.entries(HOSTILE_PNGS)) {
      const png = make();
      const expectOk = name === "valid 32x32";
      for (const [part, files] of [["image", { image: png }], ["mask", { image: valid, mask: png }]] as const) {
        const form = new FormData();
        form.set("prompt", "a red circle");
        form.set("num_inference_steps", "1");
        for (const [k, v] of Object.entries(files)) form.set(k, new Blob([v], { type: "image/png" }), `${k}.png`);
        await record(`edits ${part}=${name}`, await fetch(`${serve.url}/v1/images/edits`, { method: "POST", headers: auth, body: form }), expectOk);
      }
      const json = (url: string, body: unknown) => fetch(url, { method: "POST", headers: { ...auth, "content-type": "application/json" }, body: JSON.stringify(body) });
      const b64 = png.toString("base64");
      for (const [field, body] of [["init_images", { init_images: [b64] }], ["mask", { init_images: [valid.toString("base64")], mask: b64 }]] as const) {
        await record(`img2img ${field}=${name}`, await json(`${serve.url}/sdapi/v1/img2img`, { prompt: "a red circle", steps: 1, send_images: false, ...body }), expectOk);
      }
      for (const [field, extra] of [["image", { image: b64 }], ["mask_image", { image: valid.toString("base64"), mask_image: b64 }]] as const) {
        const req = { prompt: "a red circle", width: 32, height: 32, num_inference_steps: 1, ...extra };
        await record(`worker generate ${field}=${name}`, await json(`${worker.httpUrl}/v1/diffusion/generate`, { requests: [req] }), expectOk);
        await record(`sagemaker ${field}=${name}`, await json(`${worker.sagemakerUrl}/invocations`, { requests: [req] }), expectOk);
      }
    }
    assert.deepEqual(problems, []);
  });

  for (const [kind, routes] of [["http", workerRoutes], ["sagemaker", sagemakerRoutes]] as const) {
    it(`worker ${kind} port: no 5xx, no hang, and it still serves`, async () => {
      const url = kind === "http" ? worker.httpUrl! : worker.sagemakerUrl!;
      const before = await pids((m) => worker.service.rpc({ method: m }));
      const findings = await fuzzHttp(makeRng(SEED + (kind === "http" ? 1 : 2)), { name: `worker ${kind}`, url, key: KEY, maxBodyBytes: BODY_LIMIT, routes: routes() }, COUNT, HANG_MS);
      assert.deepEqual(findings, [], report(findings));
      assert.deepEqual(await pids((m) => worker.service.rpc({ method: m })), before, "no worker process died");
      const res = await fetch(`${url}${kind === "http" ? "/v1/diffusion/generate" : "/invocations"}`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${KEY}` },
        body: JSON.stringify({ requests: [{ prompt: "a red circle on a blue background", width: 32, height: 32, num_inference_steps: 2 }] }),
      });
      assert.equal(res.status, 200);
      const out = (await res.json()) as { outputs: { output: unknown[] }[] };
      assert.equal(out.outputs[0]!.output.length, 1);
    });
  }

  it("worker gRPC: no INTERNAL/UNKNOWN/UNAVAILABLE, no hang, and it still serves", async () => {
    const before = await pids((m) => worker.service.rpc({ method: m }));
    const findings = await fuzzGrpc(makeRng(SEED + 3), worker.grpcAddress!, KEY, COUNT, HANG_MS);
    assert.deepEqual(findings, [], report(findings));
    assert.deepEqual(await pids((m) => worker.service.rpc({ method: m })), before, "no worker process died");
    const client = createClient(worker.grpcAddress!) as grpc.Client & { Health: (r: unknown, cb: (e: grpc.ServiceError | null, v: { ready: boolean }) => void) => void };
    try {
      const h = await new Promise<{ ready: boolean }>((resolve, reject) => client.Health({}, (e, v) => (e ? reject(e) : resolve(v))));
      assert.equal(h.ready, true);
    } finally {
      client.close();
    }
  });
});
