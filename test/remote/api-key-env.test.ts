/**
 * The worker's clients read its key where the worker does: `OMNI_DIFFUSION_API_KEY`. `omni-diffusion generate
 * --executor http|grpc` without `apiKey` in `--executor-options` reaches a worker started with `--api-key`
 * when the variable holds the key (it got a 401 before), and an explicit `apiKey` still wins. The openai
 * executor does not send it (its servers are not ours). Real worker, real CLI.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { parseRemoteOptions, remoteOptionsSchema } from "../../src/executors/shared/remote-options.js";
import type { WorkerServer } from "../../src/server/worker/worker-server.js";
import { startTestWorker } from "../helpers/worker-servers.js";

const CLI = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));
const KEY = "s3cret-key";
const dir = mkdtempSync(join(tmpdir(), "omni-key-env-"));

/** `generate` through a remote executor; resolves with the exit status and output. */
async function generate(executor: string, options: Record<string, unknown>, env: Record<string, string | undefined>) {
  const { OMNI_DIFFUSION_API_KEY: _, ...base } = process.env;
  const args = ["--import", "tsx", CLI, "generate", "a red circle on a blue background", "--steps", "2", "--out", join(dir, "out.png"), "--executor", executor, "--executor-options", JSON.stringify(options)];
  return promisify(execFile)(process.execPath, args, { env: { ...base, ...env }, timeout: 120_000 }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

describe("OMNI_DIFFUSION_API_KEY on the client side", { timeout: 400_000 }, () => {
  let server: WorkerServer;
  before(async () => {
    server = await startTestWorker({ httpPort: 0, grpcPort: 0, apiKey: KEY });
  });
  after(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("http: without apiKey and without the variable the worker answers 401 (the call fails naming it)", async () => {
    const r = await generate("http", { endpoints: [server.httpUrl], retries: 0 }, {});
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /OMNI_ERR_UNAUTHORIZED/);
  });

  it("http and grpc: the variable's key is sent when apiKey is absent", async () => {
    for (const [executor, endpoint] of [["http", server.httpUrl], ["grpc", server.grpcAddress]] as const) {
      const r = await generate(executor, { endpoints: [endpoint] }, { OMNI_DIFFUSION_API_KEY: KEY });
      assert.equal(r.code, 0, `${executor}: ${r.stderr}`);
      assert.match(r.stdout, /wrote .*out\.png \(32x32, seed \d+\)/);
    }
  });

  it("an explicit apiKey wins over the variable", async () => {
    const r = await generate("http", { endpoints: [server.httpUrl], apiKey: "wrong", retries: 0 }, { OMNI_DIFFUSION_API_KEY: KEY });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /OMNI_ERR_UNAUTHORIZED/);
  });

  it("the openai executor's options do not pick the variable up", () => {
    const saved = process.env.OMNI_DIFFUSION_API_KEY;
    process.env.OMNI_DIFFUSION_API_KEY = KEY;
    try {
      assert.equal(parseRemoteOptions(remoteOptionsSchema, { endpoints: "http://127.0.0.1:1" }, "openai").apiKey, undefined);
    } finally {
      if (saved === undefined) delete process.env.OMNI_DIFFUSION_API_KEY;
      else process.env.OMNI_DIFFUSION_API_KEY = saved;
    }
  });
});
