/**
 * `omni-diffusion worker` keeps its two kinds of output apart: stdout carries only its own plain lines
 * (`listening`, `ready`) that scripts and tests wait for, and the request logs (pino JSON lines, fastify's
 * own included) go to stderr. Before, fastify's JSON "Server listening" line and every request log shared
 * stdout with the plain lines. A real worker process, with logging on (the default).
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

const CLI = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));
const ROOT = fileURLToPath(new URL("../..", import.meta.url));

describe("worker output", () => {
  it("stdout holds only the worker's plain lines; the JSON logs are on stderr", { timeout: 180_000 }, async () => {
    const child = spawn(process.execPath, ["--import", "tsx", CLI, "worker", "--http-port", "0", "--executor", "uniproc", "--threads", "1"], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    const closed = once(child, "close");
    let stdout = "";
    let stderr = "";
    child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    try {
      // Latch: the ready line (the model is loaded and the port answers).
      const url = await new Promise<string>((resolve, reject) => {
        child.stdout!.on("data", (d: Buffer) => {
          stdout += d.toString();
          const m = /omni-diffusion worker ready: http=(\S+)/.exec(stdout);
          if (m) resolve(m[1]!);
        });
        void closed.then(() => reject(new Error(`worker exited before it was ready; stderr: ${stderr}`)));
      });
      // A request the worker logs, and one it refuses (a 404 is logged too).
      assert.equal((await fetch(`${url}/health`)).status, 200);
      assert.equal((await fetch(`${url}/no-such-route`)).status, 404);
    } finally {
      child.kill("SIGTERM");
      await closed;
    }
    const out = stdout.trim().split("\n");
    for (const line of out) assert.match(line, /^omni-diffusion worker (listening|ready): /, `stdout has only the worker's plain lines; got: ${line}`);
    assert.equal(out.length, 2, stdout);
    const logs = stderr
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as { msg?: string; req?: { url?: string } });
    assert.ok(logs.some((l) => /Server listening at/.test(l.msg ?? "")), `fastify's start line is a JSON log on stderr: ${stderr}`);
    assert.ok(logs.some((l) => l.req?.url === "/health"), "the request logs are on stderr");
  });
});
