/** Issue 9 finding 16 (part): a taken port is one line naming it and its flag, from the real CLI, before any worker starts. */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createServer, type Server } from "node:net";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";

const CLI = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));
const ROOT = fileURLToPath(new URL("../..", import.meta.url));

async function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ["--import", "tsx", CLI, ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const [code] = (await once(child, "exit")) as [number | null];
  return { code, stdout, stderr };
}

describe("a port already in use", { timeout: 120_000 }, () => {
  let taken: Server;
  let port: number;
  before(async () => {
    taken = createServer();
    taken.listen(0, "127.0.0.1");
    await once(taken, "listening");
    port = (taken.address() as { port: number }).port;
  });
  after(() => taken.close());

  const cases: [string, () => string[], string][] = [
    ["serve --port", () => ["serve", "--port", String(port), "--workers", "1", "--threads", "1"], "--port"],
    ["worker --http-port", () => ["worker", "--http-port", String(port), "--workers", "1", "--threads", "1", "--no-log"], "--http-port"],
    ["worker --grpc-port", () => ["worker", "--http-port", "0", "--grpc-port", String(port), "--workers", "1", "--threads", "1", "--no-log"], "--grpc-port"],
  ];
  for (const [what, args, flag] of cases) {
    it(`${what}: exits 1 with one line naming the port and ${flag}, no stack trace`, async () => {
      const r = await runCli(args());
      assert.equal(r.code, 1, r.stderr);
      const lines = r.stderr.trim().split("\n").filter((l) => !/^npm warn/.test(l));
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0]!, new RegExp(`port ${port} on 127\\.0\\.0\\.1 is already in use; choose another with ${flag} \\[OMNI_ERR_CONFIG\\]`));
      assert.doesNotMatch(r.stderr, /\n\s+at /);
      assert.doesNotMatch(r.stdout, /listening|ready/, "nothing started");
    });
  }
});
