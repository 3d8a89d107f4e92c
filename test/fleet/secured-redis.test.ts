/**
 * The fleet on a Redis configured as deploy/ configures it (`--requirepass`, append-only): the executor
 * and a real `omni-diffusion worker --queue` process authenticate with the password in the URL; a client
 * without it can neither read prompts nor abort, inject or wipe jobs; a wrong password fails at once,
 * naming the URL and never the password; a job an authenticated attacker injects with bad data fails as
 * a ValidationError on that job; SIGTERM ends the worker with one line saying what the drain did.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { connect } from "node:net";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { setTimeout as delay } from "node:timers/promises";
import { Job, Queue } from "bullmq";
import { parseAllDocuments } from "yaml";
import { parseConfig } from "../../src/core/config.js";
import { OmniDiffusionRequest } from "../../src/core/request.js";
import { DiffusionEngine } from "../../src/engine/engine.js";
import { OmniError, UnauthorizedError } from "../../src/errors/omni-error.js";
import { QueueDiffusionExecutor } from "../../src/executors/queue-executor.js";
import { queueKeys } from "../../src/protocol/queue-protocol.js";
import { QueueWorkerChild, TestRedis, redisMissing, uniqueQueue } from "./helpers.js";

const missing = redisMissing();
if (missing) console.error(`SKIPPED fleet secured-Redis tests: ${missing}`);

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const CLI = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));
/** A password of the shape the docs tell users to make (`openssl rand -hex 24`). */
const PASSWORD = "5f1c0e9a7b3d2c4e6f8a0b1c2d3e4f5a6b7c8d9e0f1a2b3c";

/** redis-server's arguments as deploy/k8s/redis.yaml gives them, the Secret's value put in. */
function manifestRedisArgs(): string[] {
  const docs = parseAllDocuments(readFileSync(new URL("../../deploy/k8s/redis.yaml", import.meta.url), "utf8")).map((d) => d.toJS() as Record<string, any>); // eslint-disable-line @typescript-eslint/no-explicit-any
  const deployment = docs.find((d) => d?.kind === "Deployment")!;
  const args = deployment.spec.template.spec.containers[0].args as string[];
  assert.equal(args[0], "redis-server");
  return args.slice(1).map((a) => a.replace("$(REDIS_PASSWORD)", PASSWORD));
}

/**
 * One command over a bare socket (RESP), as any client on the network could send it, after an AUTH when
 * `auth` is given, then QUIT (allowed without a password); the command's whole reply.
 */
async function rawCommand(port: number, args: string[], auth?: string): Promise<string> {
  const frame = (a: string[]) => `*${a.length}\r\n${a.map((x) => `$${Buffer.byteLength(x)}\r\n${x}\r\n`).join("")}`;
  const socket = connect(port, "127.0.0.1");
  let text = "";
  socket.on("data", (d: Buffer) => (text += d.toString("utf8")));
  await once(socket, "connect");
  socket.write((auth ? frame(["AUTH", auth]) : "") + frame(args) + frame(["QUIT"]));
  await once(socket, "close");
  // AUTH's reply is one line (+OK or -WRONGPASS ...); QUIT's is the final +OK.
  const body = auth ? text.slice(text.indexOf("\r\n") + 2) : text;
  return body.replace(/\+OK\r\n$/, "").trim();
}

/** What an attacker on the network tries against the queue, each labelled by what success would mean. */
function attacks(queue: string, jobId: string): { what: string; args: string[]; destructive?: boolean }[] {
  const k = queueKeys(queue);
  return [
    { what: "list every key (job ids, worker ids)", args: ["KEYS", "*"] },
    { what: "read a job's prompt", args: ["HGETALL", `bull:${queue}:${jobId}`] },
    { what: "read the queue's event stream (results, previews)", args: ["XRANGE", `bull:${queue}:events`, "-", "+"] },
    { what: "read the live workers", args: ["HGETALL", k.workerInfo] },
    { what: "abort a job over pub/sub", args: ["PUBLISH", k.abort, jobId], destructive: true },
    { what: "record an abort a worker checks before starting", args: ["SET", k.aborted(jobId), "1"], destructive: true },
    { what: "push a job id onto the wait list", args: ["LPUSH", `bull:${queue}:wait`, "injected"], destructive: true },
    { what: "turn authentication off", args: ["CONFIG", "SET", "requirepass", ""], destructive: true },
    { what: "wipe every job", args: ["FLUSHALL"], destructive: true },
  ];
}

/**
 * Resolves once the job has finished, read from its record. Not `job.waitUntilFinished(queueEvents)`: it checks
 * the state, then listens, and a job finishing in between is never heard (a loaded CI run waited out 120 s).
 * A poll of the record, not a timing assertion: the test's own timeout is the only bound.
 */
async function finished(queue: Queue, jobId: string): Promise<void> {
  while (!(await Job.fromId(queue, jobId))?.finishedOn) await delay(100);
}

describe("a fleet on a password-protected Redis (deploy/'s settings)", { skip: missing ?? false, timeout: 600_000 }, () => {
  let redis: TestRedis;
  let worker: QueueWorkerChild;
  const queue = uniqueQueue("secured");
  before(async () => {
    redis = await TestRedis.start(manifestRedisArgs());
    assert.equal(redis.password, PASSWORD, "the manifests' Redis requires a password");
    worker = await QueueWorkerChild.start(redis.url, queue);
  });
  after(async () => {
    if (worker?.running) await worker.stop("SIGKILL");
    await redis?.close();
  });

  it("the worker's ready line names the queue without the password", () => {
    assert.match(worker.readyLine, new RegExp(`queue=redis://127\\.0\\.0\\.1:${redis.port}/0 id=`));
    assert.ok(!worker.readyLine.includes(PASSWORD), worker.readyLine);
  });

  it("the executor authenticates from the URL and serves; a client without the password reads, aborts, injects and wipes nothing (0 findings)", { timeout: 300_000 }, async () => {
    const engine = await DiffusionEngine.create({ executorClass: "queue", executorOptions: { url: redis.url, queue }, allowNonNativeSizes: true });
    try {
      const r = new OmniDiffusionRequest({ prompt: "a purple star on a yellow background", width: 32, height: 32, numInferenceSteps: 4, seed: 7 });
      const result = engine.generate(r);
      // The attack runs while the victim's request is in the queue (waiting, running or kept finished).
      const findings: string[] = [];
      for (const a of attacks(queue, r.requestId)) {
        for (const auth of [undefined, "not-the-password"]) {
          const reply = await rawCommand(redis.port, a.args, auth);
          if (!reply.startsWith("-NOAUTH") && !reply.startsWith("-WRONGPASS")) findings.push(`${a.what} (${auth ? "wrong password" : "no password"}): ${reply.slice(0, 80)}`);
        }
      }
      const out = await result;
      assert.deepEqual(findings, [], "every command without the password was refused");
      assert.equal(out.error, null, out.error?.message);
      assert.equal(out.images.length, 1, "the victim's job ran to its image (not aborted, not wiped)");
      // Control: the same reads with the password do reach the victim's data, so the probe above could fail.
      const prompt = await rawCommand(redis.port, ["HGET", `bull:${queue}:${r.requestId}`, "data"], PASSWORD);
      assert.match(prompt, /a purple star on a yellow background/, "with the password the job's prompt is readable");
      assert.equal(await rawCommand(redis.port, ["EXISTS", queueKeys(queue).aborted(r.requestId)], PASSWORD), ":0", "no abort was recorded");
    } finally {
      await engine.close();
    }
  });

  it("an injected job with enqueuedAt \"x\" fails as a ValidationError on that job; the worker keeps serving", { timeout: 300_000 }, async () => {
    const conn = { host: "127.0.0.1", port: redis.port, password: PASSWORD };
    const inject = new Queue(queue, { connection: conn });
    try {
      const bad = new OmniDiffusionRequest({ prompt: "a red circle on a blue background", width: 32, height: 32, numInferenceSteps: 4, seed: 1 });
      const job = await inject.add("generate", { request: bad.toDict(), enqueuedAt: "x" }, { jobId: bad.requestId, attempts: 3 });
      await finished(inject, job.id!);
      const done = (await Job.fromId(inject, bad.requestId))!;
      assert.equal(done.attemptsMade <= 1 && !done.failedReason, true, `completed once with an error result, not thrown (attempts ${done.attemptsMade}, failedReason ${done.failedReason})`);
      const err = (done.returnvalue as { errors: Record<string, { name: string; code: string; message: string; data: { field?: string } }> }).errors[bad.requestId]!;
      assert.equal(err.name, "ValidationError");
      assert.equal(err.code, "OMNI_ERR_VALIDATION");
      assert.equal(err.data.field, "enqueuedAt");
      assert.match(err.message, /invalid queue job data: enqueuedAt: /);
      assert.doesNotMatch(err.message, /prom|NaN|not a valid number/i, "reported as the job's own error, not from inside prom-client");
      // Not an object at all: a ValidationError named after the request field, on the job's id.
      const junk = await inject.add("generate", { request: "hello", enqueuedAt: 1 }, { jobId: "junk-job" });
      await finished(inject, junk.id!);
      const junkErr = ((await Job.fromId(inject, "junk-job"))!.returnvalue as { errors: Record<string, { name: string; data: { field?: string } }> }).errors["junk-job"]!;
      assert.equal(junkErr.name, "ValidationError");
      assert.equal(junkErr.data.field, "request");
      // The worker is still there and serves a well-formed request.
      const executor = new QueueDiffusionExecutor(parseConfig({ executorClass: "queue", executorOptions: { url: redis.url, queue }, allowNonNativeSizes: true }));
      await executor.init();
      try {
        const ok = new OmniDiffusionRequest({ prompt: "a green square on a white background", width: 32, height: 32, numInferenceSteps: 4, seed: 2 });
        const out = await executor.executeModel([ok]);
        assert.deepEqual(Object.keys(out.errors), []);
        assert.equal(out.output.length, 1);
      } finally {
        await executor.close();
      }
      assert.equal(worker.running, true);
    } finally {
      await inject.close();
    }
  });

  it("an executor with no password, or a wrong one, fails init at once with an UnauthorizedError naming the URL, not the password", { timeout: 30_000 }, async () => {
    // workerStartTimeoutMs stays at its 60 s default, twice the hang guard: only the refusal can end init in time.
    for (const url of [`redis://127.0.0.1:${redis.port}/0`, `redis://:not-the-password-123@127.0.0.1:${redis.port}/0`]) {
      const executor = new QueueDiffusionExecutor(parseConfig({ executorClass: "queue", executorOptions: { url, queue } }));
      try {
        await assert.rejects(executor.init(), (err: unknown) => {
          assert.ok(err instanceof UnauthorizedError, `UnauthorizedError, got ${String(err)}`);
          assert.ok(err instanceof OmniError && err.code === "OMNI_ERR_UNAUTHORIZED");
          assert.match(err.message, new RegExp(`^Redis at redis://127\\.0\\.0\\.1:${redis.port}/0 refused the credentials \\((NOAUTH|WRONGPASS)`));
          assert.match(err.message, url.includes("@") ? /the password in the URL is wrong/ : /it needs a password: redis:\/\/:<password>@host:port\/db/);
          assert.ok(!err.message.includes("not-the-password-123"), "the password is never in a message");
          return true;
        });
      } finally {
        await executor.close();
      }
    }
  });

  it("a worker with a wrong password exits 1 with one line, not a silent wait", { timeout: 120_000 }, async () => {
    const child = spawn(process.execPath, ["--import", "tsx", CLI, "worker", "--queue", `redis://:not-the-password-123@127.0.0.1:${redis.port}/0`, "--queue-name", queue, "--executor", "uniproc", "--threads", "1"], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    const [code] = (await once(child, "close")) as [number | null];
    assert.equal(code, 1, `exit code; stderr: ${stderr}`);
    assert.equal(stdout, "");
    const lines = stderr.trim().split("\n");
    assert.equal(lines.length, 1, `one line: ${stderr}`);
    assert.match(lines[0]!, new RegExp(`^omni-diffusion: Redis at redis://127\\.0\\.0\\.1:${redis.port}/0 refused the credentials \\(WRONGPASS .*\\): the password in the URL is wrong \\[OMNI_ERR_UNAUTHORIZED\\]$`));
    assert.ok(!stderr.includes("not-the-password-123"));
  });

  it("SIGTERM: the worker drains, prints one line saying so, and exits 0", { timeout: 120_000 }, async () => {
    const before = worker.stdout;
    const { code } = await worker.stop("SIGTERM");
    assert.equal(code, 0);
    if (!worker.child.stdout!.readableEnded) await once(worker.child.stdout!, "end");
    const printed = worker.stdout.slice(before.length).trim().split("\n");
    assert.equal(printed.length, 1, `one line: ${printed.join(" | ")}`);
    assert.match(printed[0]!, new RegExp(`^omni-diffusion worker stopped \\(SIGTERM\\): queue=redis://127\\.0\\.0\\.1:${redis.port}/0 id=${worker.id} drained 0 of 0 held jobs, handed back 0; jobs since start: 2 ok, 2 with an error$`));
  });
});
