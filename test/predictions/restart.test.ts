/**
 * Issue 23: durability. A real `serve` process (the CLI) with `--data-dir` is killed with SIGKILL while one
 * prediction has finished, two are running and twenty are queued; restarted on the same dir, every prediction
 * ends `succeeded` exactly once, the interrupted ones say in their logs that they ran again, and the finished
 * one is unchanged. Steps are held by a file latch (test/fixtures/workers/file-gate.ts), so the kill lands
 * at a known point. Also: the lock a SIGKILLed serve left is taken over, and a second serve on a live dir
 * fails with one line naming --data-dir.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { startServer } from "../../src/index.js";
import { spawnServe } from "../helpers/serve-cli.js";
import { until } from "../helpers/server.js";
import { STEP_GATE, stepGate } from "../helpers/step-gate.js";

const CLI = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));
const FILE_GATE = `${fileURLToPath(new URL("../fixtures/workers/file-gate.ts", import.meta.url))}#FileGate`;
const dir = mkdtempSync(join(tmpdir(), "omni-predictions-restart-"));
const dataDir = join(dir, "data");
const gateFile = join(dir, "hold");

type Prediction = { id: string; status: string; logs: string; output: string[] | null; completed_at: string | null };

/** `serve` on a free port with the file gate; resolves with its URL once it logs it. */
const serve = () =>
  spawnServe(["--port", "0", "--workers", "1", "--threads", "1", "--max-batch", "1", "--data-dir", dataDir, "--worker-extension", FILE_GATE, "--no-ui", "--no-a1111"], {
    ...process.env,
    OMNI_TEST_GATE_FILE: gateFile,
  });

describe("predictions survive a SIGKILL of serve", { timeout: 300_000 }, () => {
  const children: ChildProcess[] = [];
  after(() => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });

  it("1 done, 2 running, 20 queued → SIGKILL → restart: all 23 succeeded exactly once, nothing lost", async () => {
    const first = await serve();
    children.push(first.child);
    const api = (base: string) => ({
      create: async (seed: number) => {
        const res = await fetch(`${base}/v1/predictions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ input: { prompt: "a green square on a white background", num_inference_steps: 4, seed } }) });
        assert.equal(res.status, 201);
        return (await res.json()) as Prediction;
      },
      get: async (id: string) => (await (await fetch(`${base}/v1/predictions/${id}`)).json()) as Prediction,
    });
    const a = api(first.url);
    const done = await a.create(1000);
    await until(async () => (await a.get(done.id)).status === "succeeded", "the first prediction to finish");
    const doneBefore = await a.get(done.id);

    writeFileSync(gateFile, "held");
    const ids: string[] = [];
    for (let i = 0; i < 22; i++) ids.push((await a.create(i)).id);
    await until(async () => / 1\/4/.test((await a.get(ids[0]!)).logs), "the first of them held at step 1");
    const before = await Promise.all(ids.map((id) => a.get(id)));
    assert.deepEqual(before.map((p) => p.status), [...Array(2).fill("processing"), ...Array(20).fill("starting")]);

    first.child.kill("SIGKILL");
    await once(first.child, "exit");
    assert.equal(readFileSync(join(dataDir, "serve.lock"), "utf8").trim(), String(first.child.pid), "a SIGKILLed serve leaves its lock behind");
    rmSync(gateFile);

    const second = await serve(); // takes over the stale lock
    children.push(second.child);
    const b = api(second.url);
    await until(async () => (await Promise.all(ids.map((id) => b.get(id)))).every((p) => p.status === "succeeded"), "all 22 succeeded", 240_000);

    for (const [i, id] of ids.entries()) {
      const p = await b.get(id);
      assert.equal(p.logs.match(/Generated 1 image\(s\)\./g)?.length, 1, `${id} completed once`);
      const reruns = p.logs.match(/restarted while this prediction was running/g)?.length ?? 0;
      assert.equal(reruns, i < 2 ? 1 : 0, `${id}: ${i < 2 ? "was running, so ran again once" : "was queued, ran once"}`);
      assert.equal(p.output!.length, 1);
      assert.equal((await fetch(p.output![0]!)).status, 200);
    }
    const doneAfter = await b.get(done.id);
    assert.equal(doneAfter.status, "succeeded");
    assert.equal(doneAfter.completed_at, doneBefore.completed_at);
    assert.equal(doneAfter.logs, doneBefore.logs);
    const png = Buffer.from(await (await fetch(doneAfter.output![0]!)).arrayBuffer());
    assert.deepEqual(png.subarray(1, 4).toString(), "PNG");

    // A second serve on the live dir: one line naming --data-dir, exit 1, before any worker starts.
    const third = spawn(process.execPath, ["--import", "tsx", CLI, "serve", "--port", "0", "--data-dir", dataDir], { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    third.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const [code] = (await once(third, "exit")) as [number];
    assert.equal(code, 1);
    assert.equal(stderr.trim().split("\n").length, 1, stderr);
    assert.match(stderr, /^omni-diffusion: the data dir .* is in use by another serve \(pid \d+\); give each serve its own --data-dir \[OMNI_ERR_CONFIG\]/);

    second.child.kill("SIGTERM");
    await once(second.child, "exit");
  });
});

describe("a graceful stop leaves running predictions queued", { timeout: 120_000 }, () => {
  it("close() stops a running prediction at its next step; the next server on the dir runs it again, once", async () => {
    const own = mkdtempSync(join(tmpdir(), "omni-predictions-stop-"));
    const opts = { port: 0, logger: false, dataDir: own, engineConfig: { numGpus: 1, intraOpNumThreads: 1, workerExtension: STEP_GATE } } as const;
    try {
      const first = await startServer(opts);
      await stepGate(first.engine).hold(1);
      const res = await fetch(`${first.url}/v1/predictions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ input: { prompt: "a red circle on a blue background", num_inference_steps: 4, seed: 3 } }) });
      const { id } = (await res.json()) as Prediction;
      const get = async (base: string) => (await (await fetch(`${base}/v1/predictions/${id}`)).json()) as Prediction;
      await until(async () => / 1\/4/.test((await get(first.url!)).logs), "held at step 1");
      await first.close();

      const second = await startServer(opts);
      try {
        await until(async () => (await get(second.url!)).status === "succeeded", "it ran again and finished");
        const p = await get(second.url!);
        assert.equal(p.logs.match(/shut down while this prediction was running/g)?.length, 1);
        assert.equal(p.logs.match(/Generated 1 image\(s\)\./g)?.length, 1);
        assert.doesNotMatch(p.logs, /restarted while/, "a graceful stop is not mistaken for a crash");
      } finally {
        await second.close();
      }
    } finally {
      rmSync(own, { recursive: true, force: true });
    }
  });
});
