/**
 * Sends hostile requests (from `hostile.ts`) to HTTP routes and gRPC methods and records every answer that
 * breaks the contract: a 5xx or an internal error in a body, a gRPC INTERNAL/UNKNOWN/UNAVAILABLE, no answer
 * at all, or no answer within the hang guard. Shared by `test/fuzz/` (bounded) and `bench/fuzz.ts` (long).
 */
import { connect } from "node:net";
import * as grpc from "@grpc/grpc-js";
import { createClient, omniDiffusionService } from "../../src/protocol/grpc-codec.js";
import { carriedDeadline, httpAnswerProblem } from "./http-oracle.js";
import { chance, deepJson, hostileAuth, hostileBody, hostilePngB64, int, mutate, pick, randomValue, validRequestDict, type Rng } from "./hostile.js";

/** One route of an HTTP server. */
export interface HttpRoute {
  method: "GET" | "POST";
  path: string;
  /** A valid body (POST routes). */
  body?: (rng: Rng) => unknown;
}

/** An HTTP server under test. */
export interface HttpTarget {
  name: string;
  url: string;
  key: string;
  maxBodyBytes: number;
  routes: HttpRoute[];
  /** The server refuses other sites' POSTs (serve): a cross-site POST it answers with 2xx is a finding. */
  refusesCrossSite?: boolean;
}

/** An answer that broke the contract, with what was sent (enough to reproduce it from the seed). */
export interface Finding {
  target: string;
  index: number;
  sent: string;
  problem: string;
}

/** Sends raw bytes on a fresh connection (`Connection: close`) and resolves with the whole answer, or "hang". */
export function rawExchange(url: string, bytes: Buffer, hangMs: number): Promise<{ text: string; hung: boolean }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const socket = connect({ host: hostname, port: Number(port) });
    const guard = setTimeout(() => {
      socket.destroy();
      resolve({ text: Buffer.concat(chunks).toString("latin1"), hung: true });
    }, hangMs);
    socket.on("data", (d: Buffer) => chunks.push(d));
    socket.on("error", () => undefined);
    socket.on("close", () => {
      clearTimeout(guard);
      resolve({ text: Buffer.concat(chunks).toString("latin1"), hung: false });
    });
    socket.write(bytes); // not end(): a half-closed client may see its answer dropped
  });
}

/** Percent-encodes every byte (encodeURIComponent throws on lone surrogates). */
const pct = (s: string) => [...Buffer.from(s, "utf8")].map((b) => `%${b.toString(16).padStart(2, "0")}`).join("");

function hostilePath(rng: Rng, path: string): string {
  const r = rng();
  if (r < 0.8) return path;
  if (r < 0.85) return `${path}?${pct(String(randomValue(rng, 0)).slice(0, 200))}=1`;
  if (r < 0.9) return `${path}/${pct(pick(rng, ["é", "..", "%2e%2e", "\ud800", "x".repeat(3_000)]))}`;
  if (r < 0.95) return `/../..${path}`;
  return `${path}${"/".repeat(int(rng, 2, 5))}`;
}

/** Names that are Object.prototype members: a lookup in a plain object must not find them (issue 21). */
export const PROTOTYPE_KEYS = ["__proto__", "constructor", "toString", "hasOwnProperty", "valueOf", "__defineGetter__"] as const;

/**
 * One hostile HTTP request as bytes, with a summary; `crossSite` when it came "from another site's page",
 * `deadlineMs` when it carried a deadline the server takes (then a 504 TimeoutError is a right answer).
 */
export function hostileHttpRequest(rng: Rng, t: HttpTarget): { bytes: Buffer; summary: string; crossSite: boolean; deadlineMs: number | undefined } {
  const route = pick(rng, t.routes);
  const method = chance(rng, 0.85) ? route.method : pick(rng, ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]);
  const path = hostilePath(rng, route.path);
  const headers: [string, string][] = [["Host", "127.0.0.1"], ["Connection", "close"], ...hostileAuth(rng, t.key)];
  if (chance(rng, 0.1)) headers.push(["Accept", "text/event-stream"]);
  if (chance(rng, 0.05)) headers.push(["x-omni-timeout-ms", pick(rng, ["1", "0", "-5", "soon", "99999999999", "1.5"])]);
  if (chance(rng, 0.05)) headers.push(["X-Amzn-SageMaker-Custom-Attributes", pick(rng, ["timeout_ms=1", "timeout_ms=abc", "=,=,", "timeout_ms=50000000000"])]);
  if (chance(rng, 0.03)) headers.push(["X-Weird", "\xe9\xff"]);
  // A page on another site (or another port of this host) posting to the server, as a browser marks it.
  let crossSite = false;
  if (chance(rng, 0.12)) {
    headers.push(["Origin", pick(rng, ["http://evil.example", "null", "http://127.0.0.1:1", "https://127.0.0.1.evil.example"])]);
    const site = pick(rng, ["cross-site", "same-site", null]);
    if (site) headers.push(["Sec-Fetch-Site", site]);
    crossSite = !["GET", "HEAD", "OPTIONS"].includes(method);
  }
  let body: Buffer = Buffer.alloc(0);
  if (method !== "GET" && method !== "HEAD" && (route.body || chance(rng, 0.3))) {
    const b = hostileBody(rng, () => (route.body ? route.body(rng) : randomValue(rng, 3)), t.maxBodyBytes);
    body = b.body;
    headers.push(...b.headers, ["Content-Length", String(body.length)]);
  }
  const head = `${method} ${path} HTTP/1.1\r\n${headers.map(([k, v]) => `${k}: ${v}`).join("\r\n")}\r\n\r\n`;
  const summary = `${method} ${path.slice(0, 80)} [${headers.map(([k, v]) => `${k}: ${v.slice(0, 40)}`).join("; ")}] body ${body.length}B ${body.subarray(0, 80).toString("latin1")}`;
  return { bytes: Buffer.concat([Buffer.from(head, "latin1"), body]), summary, crossSite, deadlineMs: carriedDeadline(headers) };
}

/** Sends `count` hostile requests to `t`, one at a time; returns the findings. */
export async function fuzzHttp(rng: Rng, t: HttpTarget, count: number, hangMs: number, offset = 0): Promise<Finding[]> {
  const findings: Finding[] = [];
  for (let i = 0; i < count; i++) {
    const { bytes, summary, crossSite, deadlineMs } = hostileHttpRequest(rng, t);
    const answer = await rawExchange(t.url, bytes, hangMs);
    const problem = httpAnswerProblem(answer, { crossSite, deadlineMs }, { hangMs, refusesCrossSite: t.refusesCrossSite });
    if (problem) findings.push({ target: t.name, index: offset + i, sent: summary, problem: `${problem}: ${answer.text.slice(0, 300)}` });
  }
  return findings;
}

const GRPC_METHODS = ["Generate", "GenerateStream", "CollectiveRpc", "Health", "Abort"] as const;
const BAD_STATUS = new Set([grpc.status.INTERNAL, grpc.status.UNKNOWN, grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED, grpc.status.DATA_LOSS]);
const u32 = (rng: Rng) => pick(rng, [0, 1, 2, 8, 32, 33, 64, 4096, 65_535, 4_294_967_295]);

function protoRequest(rng: Rng): Record<string, unknown> {
  const base = { request_id: "", ...validRequestDict(rng) };
  // A hostile PNG (bomb, 4096², 16-bit, ...) as the init image or mask.
  if (chance(rng, 0.1)) return { ...base, [pick(rng, ["image", "mask_image"])]: Buffer.from(hostilePngB64(rng), "base64") };
  if (chance(rng, 0.4)) return base;
  const field = pick(rng, ["request_id", "prompt", "negative_prompt", "height", "width", "num_inference_steps", "guidance_scale", "seed", "num_outputs_per_prompt", "scheduler"]);
  const numeric = ["height", "width", "num_inference_steps", "num_outputs_per_prompt", "seed"].includes(field);
  return { ...base, [field]: numeric ? u32(rng) : field === "guidance_scale" ? pick(rng, [-1, 0, 1e308, Number.NaN, 7.5]) : String(randomValue(rng, 0)) };
}

function grpcMessage(rng: Rng, method: (typeof GRPC_METHODS)[number]): unknown {
  switch (method) {
    case "Generate":
    case "GenerateStream":
    {
      const requests = Array.from({ length: pick(rng, [0, 1, 1, 2, 300]) }, () => protoRequest(rng));
      // The same (often non-ASCII) id twice in one call: a call-level error quoting client text.
      if (requests.length === 2 && chance(rng, 0.5)) requests[1] = { ...requests[1], request_id: (requests[0]!.request_id = String(randomValue(rng, 0)) || "é") };
      return { requests };
    }
    case "CollectiveRpc":
      return {
        method: pick(rng, ["ping", "getStats", "generate", "wakeUp", "abort", "formatDisk", "", "é", "__proto__", "x".repeat(200)]),
        args_json: pick(rng, ["", "[]", "[1]", "é", "{", "null", "[[[[]]]]", deepJson(rng, 5_000), JSON.stringify([randomValue(rng, 3)])]),
        kwargs_json: pick(rng, ["", "{}", "[]", '{"__proto__": {"x": 1}}', JSON.stringify(randomValue(rng, 2))]),
        unique_reply_rank: pick(rng, [0, 0, 1, 9, 4_294_967_295]),
      };
    case "Health":
      return {};
    case "Abort":
      return { request_ids: Array.from({ length: pick(rng, [0, 1, 3, 300]) }, () => String(randomValue(rng, 0)).slice(0, pick(rng, [1, 300]))) };
  }
}

function grpcMetadata(rng: Rng, key: string): grpc.Metadata {
  const md = new grpc.Metadata();
  const v = pick(rng, [null, `Bearer ${key}`, `Bearer ${key}`, `bearer   ${key}`, "Bearer wrong", `Basic ${key}`, "Bearer", `Bearer ${"k".repeat(4_000)}`]);
  if (v !== null) md.set("authorization", v);
  return md;
}

/** Sends `count` hostile calls to the gRPC server at `address`, one at a time; returns the findings. */
export async function fuzzGrpc(rng: Rng, address: string, key: string, count: number, hangMs: number): Promise<Finding[]> {
  const client = createClient(address);
  const defs = omniDiffusionService().service;
  const findings: Finding[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const method = pick(rng, GRPC_METHODS);
      const def = defs[method]!;
      let bytes: Buffer;
      let summary: string;
      if (chance(rng, 0.2)) {
        bytes = Buffer.from(Array.from({ length: int(rng, 0, 200) }, () => int(rng, 0, 255)));
        summary = `${method} raw ${bytes.toString("hex").slice(0, 80)}`;
      } else {
        const msg = grpcMessage(rng, method);
        summary = `${method} ${JSON.stringify(msg).slice(0, 200)}`;
        try {
          bytes = def.requestSerialize(msg);
        } catch {
          continue; // the client library refused it: nothing reached the server
        }
      }
      const md = grpcMetadata(rng, key);
      const deadline = Date.now() + hangMs;
      const path = `/omni_diffusion.v1.OmniDiffusion/${method}`;
      const err = await new Promise<grpc.ServiceError | null>((resolve) => {
        if (method === "GenerateStream") {
          const call = client.makeServerStreamRequest(path, (b: Buffer) => b, (b: Buffer) => b, bytes, md, { deadline });
          call.on("data", () => undefined);
          call.on("error", (e: grpc.ServiceError) => resolve(e));
          call.on("end", () => resolve(null));
        } else {
          client.makeUnaryRequest(path, (b: Buffer) => b, (b: Buffer) => b, bytes, md, { deadline }, (e) => resolve(e ?? null));
        }
      });
      if (err && BAD_STATUS.has(err.code)) findings.push({ target: "grpc", index: i, sent: summary, problem: `${grpc.status[err.code]}: ${err.details}` });
    }
  } finally {
    client.close();
  }
  return findings;
}

/** The routes of `omni-diffusion serve`, with cheap valid bodies. */
export function serveRoutes(): HttpRoute[] {
  return [
    { method: "POST", path: "/v1/images/generations", body: (rng) => ({ prompt: "a red circle on a blue background", size: "32x32", num_inference_steps: int(rng, 1, 2), response_format: pick(rng, ["b64_json", "url"]), ...(chance(rng, 0.2) ? { stream: true, response_format: "b64_json", partial_images: int(rng, 0, 2) } : {}) }) },
    { method: "GET", path: "/v1/models" },
    { method: "GET", path: "/v1/models/tiny-shapes" },
    { method: "GET", path: "/health" },
    { method: "GET", path: "/metrics" },
    { method: "GET", path: "/v1/images/files/img_doesnotexist" },
    // A1111: prototype names as sampler, schedule and option keys must be a 4xx, never a 500.
    {
      method: "POST",
      path: "/sdapi/v1/txt2img",
      body: (rng) => ({ prompt: "a red circle on a blue background", steps: int(rng, 1, 2), send_images: false, sampler_name: pick(rng, ["Euler a", "DPM++ 2M Karras", ...PROTOTYPE_KEYS]), scheduler: pick(rng, ["karras", "Automatic", ...PROTOTYPE_KEYS]), ...(chance(rng, 0.3) ? { force_task_id: pick(rng, ["task(x)", ...PROTOTYPE_KEYS]) } : {}) }),
    },
    { method: "POST", path: "/sdapi/v1/options", body: (rng) => (chance(rng, 0.5) ? { [pick(rng, PROTOTYPE_KEYS.slice(1))]: randomValue(rng, 1) } : { sd_model_checkpoint: "tiny-shapes", samples_format: pick(rng, ["png", 1, null]), show_progress_every_n_steps: randomValue(rng, 0) }) },
    { method: "GET", path: "/sdapi/v1/progress" },
    { method: "POST", path: "/sdapi/v1/interrupt", body: (rng) => ({ id_task: pick(rng, ["task(x)", ...PROTOTYPE_KEYS]) }) },
    { method: "GET", path: "/sdapi/v1/progress?id_task=constructor" },
    // Hostile PNGs (bombs, 4096², 16-bit, ...) as init image or mask.
    { method: "POST", path: "/sdapi/v1/img2img", body: (rng) => ({ prompt: "a red circle", steps: 1, send_images: false, init_images: [hostilePngB64(rng)], ...(chance(rng, 0.3) ? { mask: hostilePngB64(rng) } : {}) }) },
    // Predictions (issue 23): hostile images, prototype names as input fields, unknown ids.
    {
      method: "POST",
      path: "/v1/predictions",
      body: (rng) => ({ input: { prompt: "a red circle on a blue background", num_inference_steps: int(rng, 1, 2), ...(chance(rng, 0.3) ? { image: `data:image/png;base64,${hostilePngB64(rng)}` } : {}), ...(chance(rng, 0.2) ? { [pick(rng, PROTOTYPE_KEYS)]: randomValue(rng, 1) } : {}) } }),
    },
    { method: "POST", path: "/v1/models/omni-diffusion/tiny-shapes/predictions", body: (rng) => ({ input: { prompt: "a red circle on a blue background", num_inference_steps: 1, scheduler: pick(rng, ["euler", ...PROTOTYPE_KEYS]) } }) },
    { method: "GET", path: "/v1/predictions" },
    { method: "GET", path: "/v1/predictions?cursor=constructor" },
    { method: "GET", path: "/v1/predictions/constructor" },
    { method: "POST", path: "/v1/predictions/aaaaaaaaaaaaaaaaaaaaaaaaaa/cancel", body: () => ({}) },
  ];
}

/** A valid request dict, or one whose `image` or `mask_image` is a hostile PNG. */
function requestWithImages(rng: Rng): Record<string, unknown> {
  const r = validRequestDict(rng);
  return chance(rng, 0.3) ? { ...r, [pick(rng, ["image", "mask_image"])]: hostilePngB64(rng) } : r;
}

/** The routes of the worker's HTTP API. */
export function workerRoutes(): HttpRoute[] {
  return [
    { method: "POST", path: "/v1/diffusion/generate", body: (rng) => ({ requests: [requestWithImages(rng)] }) },
    { method: "POST", path: "/v1/diffusion/rpc", body: (rng) => ({ method: pick(rng, ["ping", "getStats", "wakeUp", "formatDisk"]), args: [] }) },
    { method: "POST", path: "/v1/diffusion/abort", body: (rng) => ({ request_ids: [String(randomValue(rng, 0)) || "x"] }) },
    { method: "GET", path: "/health" },
  ];
}

/** The routes of the worker's SageMaker port. */
export function sagemakerRoutes(): HttpRoute[] {
  return [
    {
      method: "POST",
      path: "/invocations",
      body: (rng) => pick(rng, [{ requests: [requestWithImages(rng)] }, [validRequestDict(rng)], { rpc: { method: "ping" } }, { health: {} }, mutate(rng, { requests: [validRequestDict(rng)] })]),
    },
    { method: "GET", path: "/ping" },
  ];
}
