/**
 * `import "omni-diffusion"` loads no backend's SDK: bullmq and ioredis (the queue executor and `worker
 * --queue`), the AWS SDK (SageMaker) and grpc-js load only when their backend starts. bullmq alone cost about
 * 0.5 s of every import before (bench/import-time.ts measures the whole import).
 *
 * The built package (what an installed copy loads) runs in a child process under a loader hook that prints
 * every package a module resolves through `import`; CommonJS packages a package requires are read from
 * Node's require cache at the end.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { before, describe, it } from "node:test";
import { PACKAGE_ROOT } from "../../src/core/paths.js";
import { ensureBuilt } from "../helpers/built-package.js";

/** Packages of the optional backends: none may load with the package itself. */
const BACKEND_SDKS = ["bullmq", "ioredis", "@aws-sdk/", "@grpc/"];

const HOOK = `import { writeSync } from "node:fs";
export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  if (r.url.includes("/node_modules/")) writeSync(1, "LOADED " + r.url + "\\n");
  return r;
}`;
const REGISTER = `import { register } from "node:module"; register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(HOOK)}`)});`;

/** Package names (`zod`, `@grpc/grpc-js`) a child process loaded while it ran `body` after importing the package as `api`. */
function packagesLoadedBy(body: string): Set<string> {
  const entry = pathToFileURL(join(PACKAGE_ROOT, "dist", "index.js")).href;
  const script = `import { createRequire } from "node:module";
const api = await import(${JSON.stringify(entry)});
${body}
for (const k of Object.keys(createRequire(import.meta.url).cache)) console.log("LOADED " + k);
process.exit(0);`;
  const out = execFileSync(process.execPath, ["--import", `data:text/javascript,${encodeURIComponent(REGISTER)}`, "--input-type=module", "-e", script], {
    cwd: PACKAGE_ROOT,
    encoding: "utf8",
    timeout: 120_000,
  });
  const names = out
    .split("\n")
    .filter((l) => l.startsWith("LOADED "))
    .map((l) => /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(decodeURIComponent(l))?.[1])
    .filter((n): n is string => !!n);
  return new Set(names);
}

const backendsIn = (loaded: Set<string>): string[] => [...loaded].filter((p) => BACKEND_SDKS.some((b) => (b.endsWith("/") ? p.startsWith(b) : p === b))).sort();

describe("importing the package", () => {
  before(() => ensureBuilt());

  it("loads no backend SDK (bullmq, ioredis, @aws-sdk, @grpc)", () => {
    const loaded = packagesLoadedBy("");
    // The hook saw the package's own dependencies: an empty set would pass for the wrong reason.
    assert.ok(loaded.has("zod") && loaded.has("onnxruntime-node"), `the hook saw only: ${[...loaded].join(", ")}`);
    assert.deepEqual(backendsIn(loaded), []);
  });

  it("still exports the backends' classes; the queue executor loads bullmq and ioredis when it starts", () => {
    // Nothing listens on a port just closed: init fails at once (refusedTimeoutMs 0), after loading its SDK.
    const loaded = packagesLoadedBy(`
if (typeof api.QueueDiffusionExecutor !== "function" || typeof api.SageMakerDiffusionExecutor !== "function" || typeof api.GrpcDiffusionExecutor !== "function") process.exit(2);
if ((await api.resolveExecutor("queue")) !== api.QueueDiffusionExecutor) process.exit(3);
const net = await import("node:net");
const srv = net.createServer();
await new Promise((r) => srv.listen(0, "127.0.0.1", r));
const port = srv.address().port;
await new Promise((r) => srv.close(r));
const ex = new api.QueueDiffusionExecutor(api.parseConfig({ executorOptions: { url: "redis://127.0.0.1:" + port, refusedTimeoutMs: 0 } }));
const err = await ex.init().then(() => null, (e) => e);
if (!(err instanceof api.TransportError)) { console.error(err); process.exit(4); }`);
    assert.deepEqual(backendsIn(loaded), ["bullmq", "ioredis"]);
  });
});
