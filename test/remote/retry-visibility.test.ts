/**
 * Retries are observable: each one is an event on the executor (`onRetry`) and on the
 * `omni-diffusion:executor:retry` diagnostics channel, and `omni-diffusion generate` prints it on stderr.
 * A loopback proxy in front of a real worker server answers the first generate with a 503.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { subscribe, unsubscribe } from "node:diagnostics_channel";
import { once } from "node:events";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { parseConfig } from "../../src/core/config.js";
import { OmniDiffusionRequest } from "../../src/core/request.js";
import { HttpDiffusionExecutor } from "../../src/executors/http-executor.js";
import { RETRY_CHANNEL, formatRetry, type RetryEvent } from "../../src/policies/retry-events.js";
import type { WorkerServer } from "../../src/server/worker/worker-server.js";
import { startTestWorker } from "../helpers/worker-servers.js";

const T = 180_000;
const CLI = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));
const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** Forwards to `target`, answering the next `failures` generate calls with 503 instead. */
class FlakyProxy {
  failures = 0;
  generates = 0;
  readonly #server: Server;
  url = "";

  constructor(target: () => string) {
    this.#server = createServer(async (req, res) => {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      if (req.url === "/v1/diffusion/generate" && (this.generates++, this.failures > 0)) {
        this.failures--;
        res.writeHead(503, { "content-type": "application/json" });
        return res.end(JSON.stringify({ error: { name: "UnhealthyError", code: "OMNI_ERR_UNHEALTHY", message: "warming up" } }));
      }
      const headers = Object.fromEntries(Object.entries(req.headers).filter(([k]) => k !== "host" && k !== "content-length")) as Record<string, string>;
      const up = await fetch(`${target()}${req.url}`, { method: req.method, headers, body: chunks.length ? Buffer.concat(chunks) : undefined });
      res.writeHead(up.status, { "content-type": up.headers.get("content-type") ?? "application/json" });
      res.end(Buffer.from(await up.arrayBuffer()));
    });
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  close(): Promise<void> {
    return new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

describe("retries are said, not silent", { timeout: 3 * T }, () => {
  let worker: WorkerServer;
  let proxy: FlakyProxy;
  before(async () => {
    worker = await startTestWorker({ httpPort: 0 });
    proxy = new FlakyProxy(() => worker.httpUrl!);
    await proxy.listen();
  });
  after(async () => {
    await proxy?.close();
    await worker?.close();
  });

  it("a 503 is retried, reported to onRetry and on the diagnostics channel with its cause and attempt", { timeout: T }, async () => {
    const ex = new HttpDiffusionExecutor(parseConfig({ executorOptions: { endpoints: [proxy.url], retries: 3, backoffInitialMs: 1 } }));
    const fromExecutor: RetryEvent[] = [];
    const fromChannel: RetryEvent[] = [];
    const listen = (e: unknown) => fromChannel.push(e as RetryEvent);
    ex.onRetry((e) => fromExecutor.push(e));
    subscribe(RETRY_CHANNEL, listen);
    try {
      await ex.init();
      proxy.failures = 1;
      const r = new OmniDiffusionRequest({ prompt: "a red circle on a blue background", width: 32, height: 32, numInferenceSteps: 2, seed: 3 });
      const out = await ex.executeModel([r]);
      assert.equal(out.imagesFor(r.requestId).length, 1);
      assert.equal(fromExecutor.length, 1);
      const [e] = fromExecutor as [RetryEvent];
      assert.equal(e.operation, "generate");
      assert.equal(e.reason, "503");
      assert.equal(e.attempt, 1);
      assert.equal(e.maxAttempts, 4);
      assert.equal(e.endpoint, proxy.url);
      assert.deepEqual(fromChannel, fromExecutor);
      assert.equal(formatRetry(e).startsWith(`omni-diffusion: retrying ${proxy.url} after 503 (attempt 2/4) in `), true, formatRetry(e));
    } finally {
      unsubscribe(RETRY_CHANNEL, listen);
      await ex.close();
    }
  });

  it("`omni-diffusion generate` prints each retry on stderr and still writes the image", { timeout: T }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "omni-retry-"));
    try {
      proxy.failures = 1;
      const out = join(dir, "out.png");
      const opts = JSON.stringify({ endpoints: [proxy.url], retries: 3, backoffInitialMs: 1 });
      const child = spawn(
        process.execPath,
        ["--import", "tsx", CLI, "generate", "a red circle on a blue background", "--size", "32x32", "--steps", "2", "--executor", "http", "--executor-options", opts, "-o", out],
        { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
      );
      let stderr = "";
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      const [code] = await once(child, "exit");
      assert.equal(code, 0, stderr);
      assert.match(stderr, new RegExp(`retrying ${proxy.url.replace(/[.]/g, "\\.")} after 503 \\(attempt 2/4\\) in \\d+ms: warming up`));
      assert.ok(statSync(out).size > 0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
