/**
 * The compute budget of a UNet call (issue 20, item 5): calls are sized by what they cost, not by rows, and
 * shape groups share the UNet in cost. A fixed profile prices a 512x512 row at 100x a 64x64 row; the
 * pipeline is a fake that records its calls, so nothing here depends on timing.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { BatchingPolicy } from "../../src/core/config.js";
import type { DiffusionOutput } from "../../src/core/output.js";
import type { MaxCallMs } from "../../src/pipelines/call-planner.js";
import { StepLoop, type ResolvedRequest } from "../../src/pipelines/step-loop.js";
import { UnetProfile } from "../../src/pipelines/unet-profile.js";
import { DiffusionWorker } from "../../src/workers/diffusion-worker.js";
import { FakePipeline, type FakeCall } from "./fake-pipeline.js";

const SMALL = { width: 64, height: 64 };
const BIG = { width: 512, height: 512 };
/** ms of a call: 1 + 0.1 per 64x64 row, 1 + 10 per 512x512 row. */
const COSTS = { "64x64": { fixedMs: 1, perRowMs: 0.1 }, "512x512": { fixedMs: 1, perRowMs: 10 } };
const profile = () => new UnetProfile({ fixed: COSTS, learn: false });
const costOf = (c: FakeCall) => COSTS[c.size as keyof typeof COSTS].fixedMs + COSTS[c.size as keyof typeof COSTS].perRowMs * c.rows;

function setup(maxCallMs: MaxCallMs, opts: { maxBatchRows?: number; admission?: BatchingPolicy } = {}) {
  const pipeline = new FakePipeline();
  const loop = new StepLoop(pipeline, { maxBatchRows: opts.maxBatchRows ?? 32, admission: opts.admission ?? "continuous", maxCallMs, unetProfile: profile() });
  const run = (r: ResolvedRequest): Promise<DiffusionOutput> =>
    loop.run([r]).then((out) => {
      assert.deepEqual(out.errors, {}, r.request.requestId);
      return out;
    });
  return { pipeline, loop, run, calls: pipeline.calls };
}

const isBig = (c: FakeCall) => c.size === "512x512";
const isSmall = (c: FakeCall) => c.size === "64x64";

describe("compute budget per UNet call", () => {
  /**
   * Two big requests of 8 rows each (4 guided images: 81 ms a call) ahead of eight small guided ones (2 rows,
   * 4 steps), all at once.
   */
  async function bigsThenSmalls(maxCallMs: MaxCallMs): Promise<FakeCall[]> {
    const { pipeline, run, calls } = setup(maxCallMs);
    const bigs = ["B1", "B2"].map((id, i) => pipeline.request(id, { ...BIG, guidanceScale: 4, numOutputsPerPrompt: 4, seed: i }));
    const smalls = Array.from({ length: 8 }, (_, i) => pipeline.request(`S${i}`, { ...SMALL, guidanceScale: 4, seed: 10 + i }));
    await Promise.all([...bigs, ...smalls].map(run));
    return calls;
  }

  it("small requests get their calls between the big ones instead of waiting behind them (rows rule for contrast)", async () => {
    const budget = await bigsThenSmalls(25);
    const lastSmall = budget.findLastIndex(isSmall);
    const bigsBefore = budget.slice(0, lastSmall).filter(isBig).length;
    // One big call (81 ms of UNet for 16 rows owed a share: the running big request and the queued one) went
    // first, as the oldest group; the small group (16 rows) then caught up, all four of its steps (2.6 ms
    // each), before the big group's next turn.
    assert.equal(bigsBefore, 1, JSON.stringify(budget));
    assert.deepEqual(budget.filter(isSmall).map((c) => c.ids.length), [8, 8, 8, 8], "the small requests shared every call");
    // Each big request is over the budget on its own: it ran alone, the other big one waiting for it.
    for (const c of budget.filter(isBig)) assert.equal(c.ids.length, 1, JSON.stringify(c));
    assert.deepEqual(budget.filter(isBig).map((c) => c.ids[0]), ["B1", "B1", "B1", "B1", "B2", "B2", "B2", "B2"]);

    // The rows rule steps the two big requests together (16 rows, 161 ms a call) and alternates groups by rows:
    // the small requests wait a big call between each of their steps.
    const rows = await bigsThenSmalls("off");
    const bigsBeforeRows = rows.slice(0, rows.findLastIndex(isSmall)).filter(isBig);
    assert.ok(bigsBeforeRows.length >= 3, JSON.stringify(rows));
    assert.ok(bigsBeforeRows.every((c) => c.rows === 16));
  });

  it("a stream of small requests neither stalls behind the big ones nor starves them; every shared call within the budget", async () => {
    const { pipeline, run, calls } = setup(25);
    const CAP = 3000;
    let sent = 0;
    let bigsDone = false;
    const client = async () => {
      while (!bigsDone && sent < CAP) await run(pipeline.request(`s${sent}`, { ...SMALL, guidanceScale: 4, numInferenceSteps: 2, seed: sent++ }));
    };
    const streams = Array.from({ length: 4 }, client);
    // The big requests arrive with the stream in full swing; two of them (2 rows, 21 ms each) do not fit one call.
    await new Promise<void>((resolve) => setImmediate(resolve));
    await Promise.all(["B1", "B2"].map((id, i) => run(pipeline.request(id, { ...BIG, guidanceScale: 4, numInferenceSteps: 6, seed: i }))));
    bigsDone = true;
    const streaming = sent < CAP;
    await Promise.all(streams);

    assert.ok(streaming, "the big requests finished while the small stream still ran");
    const bigCalls = calls.map((c, i) => (isBig(c) ? i : -1)).filter((i) => i >= 0);
    assert.equal(bigCalls.length, 12, "6 steps of each big request, one request per call");
    for (let k = 1; k < bigCalls.length; k++) {
      const between = calls.slice(bigCalls[k - 1]! + 1, bigCalls[k]).filter(isSmall).length;
      // Every row is owed the same UNet time: the small group (8 rows, 1.8 ms a call, 0.225 ms a row) catches
      // up the 21 ms of a big call per big row owed a share (4 while both big requests are there, the second
      // queued; 2 after): about 23, then 47 calls.
      assert.ok(between >= 1 && between <= 48, `${between} small calls between big calls ${k} and ${k + 1}`);
    }
    for (const c of calls) if (c.ids.length > 1) assert.ok(costOf(c) <= 25, `a shared call over the budget: ${JSON.stringify(c)}`);
  });

  it("a request bigger than the budget runs alone, and the hard cap of maxBatchRows still holds", async () => {
    const { pipeline, run, calls } = setup(25, { maxBatchRows: 6 });
    // 8 rows (81 ms): over the budget and over maxBatchRows; the later 512x512 request must wait for it.
    const huge = pipeline.request("huge", { ...BIG, guidanceScale: 4, numOutputsPerPrompt: 4 });
    const next = pipeline.request("next", { ...BIG, guidanceScale: 1 });
    const smalls = Array.from({ length: 5 }, (_, i) => pipeline.request(`S${i}`, { ...SMALL, guidanceScale: 4, seed: i }));
    await Promise.all([huge, next, ...smalls].map(run));
    const withHuge = calls.filter((c) => c.ids.includes("huge"));
    assert.equal(withHuge.length, 4);
    assert.ok(withHuge.every((c) => c.ids.length === 1 && c.rows === 8));
    assert.ok(calls.findIndex((c) => c.ids.includes("next")) > calls.findLastIndex((c) => c.ids.includes("huge")), "same size: first come, first served");
    // The small group is cheap (1.6 ms for 6 rows) but capped at 6 rows: 3 requests per call.
    assert.ok(calls.filter(isSmall).every((c) => c.rows <= 6), JSON.stringify(calls.filter(isSmall)));
  });

  it('"auto" takes each size\'s knee from the profile: many small rows per call, few big ones', async () => {
    const p = profile();
    // 64x64: per row 0.1 + 1/rows ms; from 27 rows on, no bigger call (up to 32) is 5 % cheaper per row.
    assert.deepEqual(p.knee("64x64", 32), { rows: 27, ms: 1 + 0.1 * 27, source: "fixed", exploring: false });
    // 512x512: one row more than halves nothing; at 2 rows the fixed cost is already under 5 %.
    assert.deepEqual(p.knee("512x512", 32), { rows: 2, ms: 21, source: "fixed", exploring: false });

    const { pipeline, loop, run, calls } = setup("auto");
    const smalls = Array.from({ length: 16 }, (_, i) => pipeline.request(`S${i}`, { ...SMALL, guidanceScale: 4, seed: i }));
    const bigs = ["B1", "B2"].map((id, i) => pipeline.request(id, { ...BIG, guidanceScale: 4, seed: i }));
    await Promise.all([...smalls, ...bigs].map(run));
    assert.deepEqual([...new Set(calls.filter(isSmall).map((c) => c.rows))], [26, 6], "13 guided requests fit 27 rows, then the other 3");
    assert.ok(calls.filter(isBig).every((c) => c.rows === 2), "the two big requests one at a time");
    const budget = loop.callBudget;
    assert.equal(budget.maxCallMs, "auto");
    assert.deepEqual(
      budget.sizes.map((s) => [s.size, s.knee?.rows, s.budgetMs]),
      [
        ["64x64", 27, 3.7],
        ["512x512", 2, 21],
      ],
    );
  });

  it("request and none admission keep their meaning: the budget sizes no request-level batch", async () => {
    const req = setup(25, { admission: "request" });
    const batch = ["A", "B", "C"].map((id, i) => req.pipeline.request(id, { ...BIG, guidanceScale: 4, seed: i }));
    await req.loop.run(batch);
    assert.deepEqual(req.calls.map((c) => c.ids.length), [3, 3, 3, 3], "one call's requests step together (63 ms, over the budget)");

    const none = setup(25, { admission: "none" });
    await Promise.all(["A", "B"].map((id, i) => none.run(none.pipeline.request(id, { ...SMALL, seed: i }))));
    assert.ok(none.calls.every((c) => c.ids.length === 1));
  });

  it("the worker reports the budget and the profile in getStats", async () => {
    const pipeline = new FakePipeline();
    const worker = new DiffusionWorker(pipeline, { rank: 0, batching: "continuous", maxBatchRows: 32, maxCallMs: 25, unetProfile: profile() });
    await worker.generateOutput([pipeline.request("a", SMALL).request.toDict()]);
    const stats = worker.getStats();
    assert.equal(stats.callBudget?.maxCallMs, 25);
    assert.deepEqual(
      stats.callBudget?.sizes.map((s) => [s.size, s.budgetMs, s.fixed]),
      [
        ["64x64", 25, COSTS["64x64"]],
        ["512x512", 25, COSTS["512x512"]],
      ],
    );
    await worker.close();
  });
});
