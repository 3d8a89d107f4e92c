/**
 * Two worker servers behind one `http` executor; one (a separate process) is SIGKILLed while 40 requests
 * are in flight. Every request must complete with exactly its own image; the dead endpoint's circuit
 * opens, and closes again once the server is back.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { parseConfig } from "../../src/core/config.js";
import type { DiffusionOutput } from "../../src/core/output.js";
import { OmniDiffusionRequest } from "../../src/core/request.js";
import { HttpDiffusionExecutor } from "../../src/executors/http-executor.js";
import type { EndpointMetrics } from "../../src/policies/endpoint-pool.js";
import type { WorkerServer } from "../../src/server/worker/worker-server.js";
import { ManualClock } from "../helpers/manual-clock.js";
import { waitGone } from "../helpers/processes.js";
import { ChildWorker, startTestWorker } from "../helpers/worker-servers.js";

const T = 240_000; // generous: a starved machine; it takes ~15 s on two idle cores
/** The breakers' half-open wait: on the executor's manual clock, so only the test decides when it is over. */
const HALF_OPEN_MS = 60_000;

describe("failover between two worker servers", { timeout: T }, () => {
  let a: ChildWorker;
  let b: WorkerServer;
  let ex: HttpDiffusionExecutor;
  const clock = new ManualClock();
  const metrics = (url: string): EndpointMetrics => ex.endpointMetrics().find((m) => m.endpoint === url)!;

  before(async () => {
    const [ca, cb] = await Promise.allSettled([ChildWorker.start(["--http-port", "0"]), startTestWorker({ httpPort: 0 })]);
    if (ca.status === "fulfilled") a = ca.value;
    if (cb.status === "fulfilled") b = cb.value;
    if (ca.status === "rejected" || cb.status === "rejected") throw ca.status === "rejected" ? ca.reason : (cb as PromiseRejectedResult).reason;
    ex = new HttpDiffusionExecutor(
      parseConfig({
        executorOptions: { endpoints: [a.httpUrl!, b.httpUrl!], retries: 4, breakerThreshold: 2, halfOpenAfterMs: HALF_OPEN_MS, backoffInitialMs: 20, timeoutMs: 60_000 },
      }),
      { clock },
    );
    await ex.init();
  });
  after(async () => {
    await ex?.close();
    await a?.stop("SIGKILL");
    await b?.close();
  });

  it("every one of 40 concurrent requests gets exactly its own image while one server is SIGKILLed; the circuit opens, then closes", { timeout: T }, async () => {
    const ping = await fetch(`${a.httpUrl}/v1/diffusion/rpc`, { method: "POST", headers: { "content-type": "application/json" }, body: '{"method":"ping"}' });
    const [{ pid: workerPidA }] = ((await ping.json()) as { result: { pid: number }[] }).result;
    const requests = Array.from({ length: 40 }, (_, i) => new OmniDiffusionRequest({ prompt: `a red square ${i}`, width: 32, height: 32, numInferenceSteps: 4, seed: 1000 + i }));
    let done = 0;
    let killed!: () => void;
    const killedLatch = new Promise<void>((resolve) => (killed = resolve));
    let outstandingOnA = -1;
    const results = requests.map((r) =>
      ex.executeModel([r]).then((out) => {
        if (++done === 5) {
          outstandingOnA = metrics(a.httpUrl!).outstanding;
          a.child.kill("SIGKILL");
          killed();
        }
        return out;
      }),
    );
    await killedLatch;
    const outs: DiffusionOutput[] = await Promise.all(results);

    assert.ok(outstandingOnA > 0, `requests were in flight on the killed server (${outstandingOnA})`);
    outs.forEach((out, i) => {
      const r = requests[i]!;
      assert.deepEqual(out.errors, {}, `request ${i} has no error`);
      assert.equal(out.output.length, 1, `request ${i} got exactly one image`);
      const [img] = out.output;
      assert.equal(img!.requestId, r.requestId, `request ${i} got its own image`);
      assert.equal(img!.seed, r.seed);
      assert.equal(img!.width, 32);
    });
    assert.equal(new Set(outs.map((o) => o.output[0]!.requestId)).size, 40, "40 distinct requests answered");

    const deadA = metrics(a.httpUrl!);
    assert.equal(deadA.state, "open", "the dead endpoint's circuit is open");
    // The clock has not moved since it opened: no probe went to the dead server, however long all this took.
    assert.equal(deadA.breakerOpens, 1);
    assert.equal(deadA.probeDueInMs, HALF_OPEN_MS);
    assert.ok(metrics(b.httpUrl!).retries >= 1, "requests failed over to the live server");
    assert.deepEqual(await waitGone([workerPidA], 15_000), [], "the killed server's worker process went with it");

    // The server comes back on the same port (ready: a latch on its "ready" line). Back or not, its circuit
    // stays open until the clock says the probe is due; then one health round trip is that probe, and it
    // closes the circuit: no polling, no waiting on the real clock.
    const port = new URL(a.httpUrl!).port;
    a = await ChildWorker.start(["--http-port", port]);
    await ex.checkHealth();
    assert.equal(metrics(a.httpUrl!).state, "open", "a health check before the probe is due does not touch the open circuit");
    clock.advance(HALF_OPEN_MS - 1);
    await ex.checkHealth();
    assert.equal(metrics(a.httpUrl!).state, "open", "nor 1 ms before");
    clock.advance(1);
    assert.equal(metrics(a.httpUrl!).probeDueInMs, 0);
    await ex.checkHealth();
    assert.equal(metrics(a.httpUrl!).state, "closed", `the probe closed the circuit (last error: ${metrics(a.httpUrl!).lastError})`);
    const before = metrics(a.httpUrl!).successes;
    const more = await Promise.all(Array.from({ length: 6 }, (_, i) => ex.executeModel([new OmniDiffusionRequest({ prompt: `a blue cross ${i}`, width: 32, height: 32, numInferenceSteps: 2, seed: i })])));
    assert.ok(more.every((o) => o.output.length === 1));
    assert.ok(metrics(a.httpUrl!).successes > before, "the recovered server takes requests again");
  });
});
