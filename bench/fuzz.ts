/**
 * The fuzz suite's long mode: thousands of hostile requests against real `omni-diffusion serve` and
 * `omni-diffusion worker` processes (HTTP, SageMaker port, gRPC), then RSS of each server process (and
 * its worker processes) before and after, and every finding (5xx, internal error, no answer, hang).
 *
 *   npx tsx bench/fuzz.ts --count 2000 [--seed 42] [--hang-ms 60000]
 *
 * Exits 1 when there is a finding or a server died. A 504 TimeoutError to a request that carried its own
 * short deadline (`x-omni-timeout-ms: 1`, SageMaker `timeout_ms=1`) is the right answer, not a finding
 * (test/fuzz/http-oracle.ts).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { makeRng } from "../test/fuzz/hostile.js";
import { fuzzGrpc, fuzzHttp, sagemakerRoutes, serveRoutes, workerRoutes, type Finding } from "../test/fuzz/runner.js";
import { benchArgs } from "./lib/bench-args.js";
import { startCliServer, stopCliServer } from "./lib/cli-server.js";
import { rssLine } from "./lib/rss.js";
import { intFlag } from "./lib/stats.js";

const args = benchArgs(import.meta.url, { count: { type: "string", default: "2000" }, seed: { type: "string" }, "hang-ms": { type: "string", default: "60000" } });
const COUNT = intFlag("count", args.count, 1);
const SEED = args.seed !== undefined ? intFlag("seed", args.seed, 0) : Math.floor(Math.random() * 2 ** 31);
const HANG_MS = intFlag("hang-ms", args["hang-ms"], 1_000);
const KEY = "fuzz-key";
const BODY = 64 * 1024;
const LIMITS = ["--request-timeout", "5000", "--headers-timeout", "5000", "--api-key", KEY, "--workers", "1", "--threads", "1"];

/** `omni-diffusion worker` with all three front ends on free ports; resolves with its URLs once ready. */
async function startCliWorker(): Promise<{ child: ChildProcess; urls: Record<string, string> }> {
  const cli = fileURLToPath(new URL("../src/cli/main.ts", import.meta.url));
  const child = spawn(process.execPath, ["--import", "tsx", cli, "worker", "--http-port", "0", "--grpc-port", "0", "--sagemaker-port", "0", "--body-limit", String(BODY), "--no-log", ...LIMITS], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  child.stdout!.setEncoding("utf8");
  let out = "";
  const urls = await new Promise<Record<string, string>>((resolve, reject) => {
    child.stdout!.on("data", (d: string) => {
      out += d;
      const line = /omni-diffusion worker ready: (.*)/.exec(out)?.[1];
      if (line) resolve(Object.fromEntries(line.trim().split(/\s+/).map((kv) => kv.split("=", 2) as [string, string])));
    });
    child.once("exit", (code) => reject(new Error(`the worker exited with ${code} before it was ready`)));
  });
  return { child, urls };
}

console.log(`bench/fuzz: seed ${SEED}, ${COUNT} requests per target`);
const serve = await startCliServer([...LIMITS, "--max-steps", "8", "--max-size", "64", "--max-n", "2", "--max-body-bytes", String(BODY), "--log-level", "info"]);
const worker = await startCliWorker();
const findings: Finding[] = [];
const rss = () => `  ${rssLine("serve", serve.child.pid!)}\n  ${rssLine("worker", worker.child.pid!)}`;
try {
  console.log(`RSS before:\n${rss()}`);
  const t0 = performance.now();
  findings.push(...(await fuzzHttp(makeRng(SEED), { name: "serve", url: serve.url, key: KEY, maxBodyBytes: BODY, routes: serveRoutes() }, COUNT, HANG_MS)));
  findings.push(...(await fuzzHttp(makeRng(SEED + 1), { name: "worker http", url: worker.urls.http!, key: KEY, maxBodyBytes: BODY, routes: workerRoutes() }, COUNT, HANG_MS)));
  findings.push(...(await fuzzHttp(makeRng(SEED + 2), { name: "worker sagemaker", url: worker.urls.sagemaker!, key: KEY, maxBodyBytes: BODY, routes: sagemakerRoutes() }, COUNT, HANG_MS)));
  findings.push(...(await fuzzGrpc(makeRng(SEED + 3), worker.urls.grpc!, KEY, COUNT, HANG_MS)));
  const secs = (performance.now() - t0) / 1000;
  console.log(`${4 * COUNT} requests in ${secs.toFixed(1)} s (${((4 * COUNT) / secs).toFixed(0)} req/s)`);
  console.log(`RSS after:\n${rss()}`);
  const alive = [serve.child, worker.child].every((c) => c.exitCode === null && c.signalCode === null);
  console.log(`servers alive: ${alive}; findings: ${findings.length}`);
  for (const f of findings.slice(0, 20)) console.log(`  #${f.index} ${f.target}: ${f.problem.slice(0, 200)}\n    sent: ${f.sent}`);
  if (findings.length || !alive) process.exitCode = 1;
} finally {
  await Promise.all([stopCliServer(serve.child), (async () => {
    worker.child.kill("SIGTERM");
    await once(worker.child, "exit");
  })()]);
}
