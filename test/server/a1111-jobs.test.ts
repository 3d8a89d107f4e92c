/**
 * Issue 21 item 5: A1111 `progress` and `interrupt` act only on the caller's own calls (same credentials and
 * client address; `force_task_id`/`id_task` picks one), `--a1111-shared-progress` keeps A1111's shared view,
 * and a call interrupted before it produced anything says so instead of answering `images: []`. The gated
 * executor holds each call until the test releases or interrupts it: no timing involved.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { OmniServer, type ServerOptions } from "../../src/index.js";
import { GatedExecutor } from "../fixtures/server/gated-executor.js";
import { until } from "../helpers/server.js";

const KEY = "jobs-key";
const basic = (user: string) => `Basic ${Buffer.from(`${user}:${KEY}`).toString("base64")}`;
const ALICE = basic("alice");
const BOB = basic("bob");

async function gatedServer(extra: Partial<ServerOptions> = {}): Promise<{ server: OmniServer; gate: GatedExecutor }> {
  const server = await OmniServer.create({ apiKey: KEY, logger: false, defaultMetrics: false, engineConfig: { executorClass: GatedExecutor, batchWindowMs: 0, limits: { maxBatchSize: 1 } }, ...extra });
  return { server, gate: server.engine.executor as GatedExecutor };
}

interface Progress {
  state: { job_count: number; interrupted: boolean };
  current_task: string | null;
}

describe("A1111 progress and interrupt are scoped to the caller (issue 21 item 5)", () => {
  let server: OmniServer;
  let gate: GatedExecutor;
  before(async () => ({ server, gate } = await gatedServer()));
  after(() => server.close());

  const txt2img = (auth: string, body: Record<string, unknown> = {}, remoteAddress = "127.0.0.1") =>
    server.app.inject({ method: "POST", url: "/sdapi/v1/txt2img", remoteAddress, headers: { authorization: auth, "content-type": "application/json" }, payload: JSON.stringify({ prompt: "a red circle", steps: 4, ...body }) });
  const progress = async (auth: string, query = "", remoteAddress = "127.0.0.1") =>
    (await server.app.inject({ method: "GET", url: `/sdapi/v1/progress${query}`, remoteAddress, headers: { authorization: auth } })).json() as Progress;
  const interrupt = (auth: string, remoteAddress = "127.0.0.1", payload?: unknown) =>
    server.app.inject({ method: "POST", url: "/sdapi/v1/interrupt", remoteAddress, headers: { authorization: auth, ...(payload ? { "content-type": "application/json" } : {}) }, ...(payload ? { payload: JSON.stringify(payload) } : {}) });

  test("another client (other credentials, or the same credentials from another address) neither sees nor stops the call", async () => {
    const started = gate.started(1);
    const call = txt2img(ALICE);
    await started;
    assert.equal((await progress(ALICE)).state.job_count, 1, "the caller sees its own call");
    assert.equal((await progress(BOB)).state.job_count, 0, "another user name: idle");
    assert.equal((await progress(ALICE, "", "10.0.0.9")).state.job_count, 0, "another address: idle");
    assert.equal((await interrupt(BOB)).statusCode, 200);
    assert.equal((await interrupt(ALICE, "10.0.0.9")).statusCode, 200);
    assert.equal((await progress(ALICE)).state.interrupted, false, "neither interrupt reached the call");
    gate.release();
    const res = await call;
    assert.equal(res.statusCode, 200);
    assert.equal((res.json() as { images: string[] }).images.length, 1);
  });

  test("a call interrupted before it produced anything answers 499 saying so, not images: []", async () => {
    const started = gate.started(2);
    const call = txt2img(ALICE);
    await started;
    assert.equal((await interrupt(ALICE)).statusCode, 200);
    const res = await call;
    assert.equal(res.statusCode, 499);
    const body = res.json() as { error: string; detail: string };
    assert.equal(body.error, "AbortedError");
    assert.match(body.detail, /interrupted .*before any image or preview was ready/);
  });

  test("force_task_id names the call; id_task picks it for progress and interrupt, for its owner only", async () => {
    const started = gate.started(3);
    const first = txt2img(ALICE, { force_task_id: "task(first)" });
    await started;
    // One image per batch: the second call waits in the queue behind the first.
    const second = txt2img(ALICE, { force_task_id: "task(second)" });
    await until(async () => (await progress(ALICE, "?id_task=task(second)")).current_task === "task(second)", "the second call to be registered");
    assert.equal((await progress(ALICE)).current_task, "task(first)", "no id: the oldest of the caller's calls");
    assert.equal((await progress(ALICE, "?id_task=task(second)")).current_task, "task(second)");
    assert.equal((await progress(BOB, "?id_task=task(second)")).current_task, null, "not Bob's");
    assert.equal((await progress(ALICE, "?id_task=task(none)")).current_task, null);
    assert.equal((await interrupt(BOB, "127.0.0.1", { id_task: "task(second)" })).statusCode, 200);
    assert.equal((await progress(ALICE, "?id_task=task(second)")).state.interrupted, false);
    assert.equal((await interrupt(ALICE, "127.0.0.1", { id_task: "task(second)" })).statusCode, 200);
    assert.equal((await second).statusCode, 499, "the second call was stopped (dropped from the queue)");
    assert.equal((await progress(ALICE)).state.interrupted, false, "the first still runs");
    gate.release();
    assert.equal((await first).statusCode, 200);
  });

  test("--a1111-shared-progress: everyone sees and stops the oldest call, as in A1111", async () => {
    const { server: shared, gate: g } = await gatedServer({ a1111SharedJobs: true });
    try {
      const started = g.started(1);
      const call = shared.app.inject({ method: "POST", url: "/sdapi/v1/txt2img", headers: { authorization: ALICE, "content-type": "application/json" }, payload: JSON.stringify({ prompt: "a red circle", steps: 4 }) });
      await started;
      const p = (await shared.app.inject({ method: "GET", url: "/sdapi/v1/progress", headers: { authorization: BOB } })).json() as Progress;
      assert.equal(p.state.job_count, 1);
      assert.equal((await shared.app.inject({ method: "POST", url: "/sdapi/v1/interrupt", headers: { authorization: BOB } })).statusCode, 200);
      assert.equal((await call).statusCode, 499);
    } finally {
      await shared.close();
    }
  });
});
