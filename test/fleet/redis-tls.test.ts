/**
 * `rediss://` end to end: a real `redis-server` serving TLS only (a CA and a certificate for 127.0.0.1
 * made here with openssl) and a password; a real `omni-diffusion worker --queue rediss://...` and a real
 * `omni-diffusion generate --executor queue` talk to it, trusting the CA through `NODE_EXTRA_CA_CERTS` as
 * docs/fleet.md says. A client that does not trust the CA is refused by the TLS handshake.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { parseConfig } from "../../src/core/config.js";
import { TransportError } from "../../src/errors/omni-error.js";
import { QueueDiffusionExecutor } from "../../src/executors/queue-executor.js";
import { QueueWorkerChild, TestRedis, freePort, redisMissing, uniqueQueue } from "./helpers.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const CLI = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));
const PASSWORD = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718";

function opensslMissing(): string | null {
  const r = spawnSync("openssl", ["version"], { encoding: "utf8" });
  return r.error ? `openssl is not installed (${r.error.message})` : null;
}
const missing = redisMissing() ?? opensslMissing();
if (missing) console.error(`SKIPPED fleet TLS tests: ${missing}`);

describe("a fleet over rediss:// (TLS and a password)", { skip: missing ?? false, timeout: 600_000 }, () => {
  let dir: string;
  let redis: TestRedis;
  let tlsPort: number;
  let worker: QueueWorkerChild | undefined;
  const queue = uniqueQueue("tls");
  const extraCa = process.env.NODE_EXTRA_CA_CERTS;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "omni-tls-"));
    const { ca, cert, key } = makeCerts(dir);
    tlsPort = await freePort();
    // TLS only: the plain port is off.
    redis = await TestRedis.start(["--port", "0", "--tls-port", String(tlsPort), "--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", ca, "--tls-auth-clients", "no", "--requirepass", PASSWORD]);
    // The children (worker, generate) trust the CA as docs/fleet.md says; this process does not (below).
    process.env.NODE_EXTRA_CA_CERTS = ca;
  });
  after(async () => {
    if (extraCa === undefined) delete process.env.NODE_EXTRA_CA_CERTS;
    else process.env.NODE_EXTRA_CA_CERTS = extraCa;
    await worker?.stop("SIGKILL");
    await redis?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const url = () => `rediss://:${PASSWORD}@127.0.0.1:${tlsPort}/0`;

  it("a worker pulls over rediss:// and `generate --executor queue` gets its image", { timeout: 300_000 }, async () => {
    worker = await QueueWorkerChild.start(url(), queue);
    assert.match(worker.readyLine, new RegExp(`queue=rediss://127\\.0\\.0\\.1:${tlsPort}/0 id=`), "the ready line says TLS, without the password");
    const out = join(dir, "tls.png");
    const gen = spawn(
      process.execPath,
      ["--import", "tsx", CLI, "generate", "a red circle on a blue background", "--executor", "queue", "--executor-options", JSON.stringify({ url: url(), queue }), "--size", "32x32", "--steps", "4", "--seed", "3", "--out", out],
      { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
    );
    let stderr = "";
    gen.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    const [code] = (await once(gen, "close")) as [number | null];
    assert.equal(code, 0, `generate over rediss:// exited ${code}: ${stderr}`);
    assert.ok(existsSync(out), "the image was written");
  });

  it("without the CA trusted, the TLS handshake refuses the server: init fails within refusedTimeoutMs naming the certificate problem", { timeout: 30_000 }, async () => {
    // This process was started without NODE_EXTRA_CA_CERTS: it does not trust the test CA. workerStartTimeoutMs
    // stays at its 60 s default, twice the hang guard: only the failed handshake can end init in time.
    const executor = new QueueDiffusionExecutor(parseConfig({ executorClass: "queue", executorOptions: { url: url(), queue, refusedTimeoutMs: 0 } }));
    try {
      await assert.rejects(executor.init(), (err: unknown) => {
        assert.ok(err instanceof TransportError, String(err));
        assert.equal(err.data.unreachable, true);
        assert.match(err.message, new RegExp(`^Redis at rediss://127\\.0\\.0\\.1:${tlsPort}/0: the TLS connection to 127\\.0\\.0\\.1:${tlsPort} failed \\((SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_GET_ISSUER_CERT_LOCALLY|UNABLE_TO_VERIFY_LEAF_SIGNATURE): .*NODE_EXTRA_CA_CERTS`));
        assert.ok(!err.message.includes(PASSWORD));
        return true;
      });
    } finally {
      await executor.close();
    }
  });
});

/** A CA, and a certificate it signed for IP 127.0.0.1 (subjectAltName), in `dir`. */
function makeCerts(dir: string): { ca: string; cert: string; key: string } {
  const run = (args: string[]) => {
    const r = spawnSync("openssl", args, { cwd: dir, encoding: "utf8" });
    assert.equal(r.status, 0, `openssl ${args.join(" ")}: ${r.stderr}`);
  };
  run(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=omni test CA", "-keyout", "ca.key", "-out", "ca.pem"]);
  run(["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "redis.key", "-out", "redis.csr"]);
  writeFileSync(join(dir, "san.cnf"), "subjectAltName=IP:127.0.0.1\n");
  run(["x509", "-req", "-in", "redis.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2", "-out", "redis.pem", "-extfile", "san.cnf"]);
  return { ca: join(dir, "ca.pem"), cert: join(dir, "redis.pem"), key: join(dir, "redis.key") };
}
