/**
 * One step loop denoises every request; the batching policy is only its admission rule. `none`: one request
 * in the loop at a time. `request`: one generate call's requests together, the next call once they are all
 * done. `continuous`: concurrent calls share UNet calls. Each request is resolved (defaults, checks) once.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { BatchingPolicy } from "../../src/core/config.js";
import type { OmniDiffusionRequest } from "../../src/core/request.js";
import type { DiffusionOutput } from "../../src/core/output.js";
import { loadPipeline } from "../../src/pipelines/load.js";
import { isSteppable, type DiffusionPipeline, type GenerateOptions, type SteppablePipeline } from "../../src/pipelines/types.js";
import { DiffusionWorker } from "../../src/workers/diffusion-worker.js";
import { MODEL_DIR } from "../helpers/model.js";
import { ProgressLog, request } from "./helpers.js";

describe("batching policies are admission rules of one step loop", { timeout: 120_000 }, () => {
  let pipeline: SteppablePipeline;
  let resolved = 0;
  before(async () => {
    const p = await loadPipeline(MODEL_DIR, { intraOpNumThreads: 1 });
    assert.ok(isSteppable(p));
    pipeline = p;
    // Counts calls of the real resolve (the worker must resolve each request once, not validate then resolve).
    const resolve = p.resolve.bind(p);
    p.resolve = (r: OmniDiffusionRequest) => (resolved++, resolve(r));
  });
  after(() => pipeline.release());

  /** Call X (two requests) and call Y (one request), sent at once; the progress of all three. */
  async function twoCalls(batching: BatchingPolicy): Promise<{ log: ProgressLog; stats: ReturnType<DiffusionWorker["getStats"]> }> {
    const worker = new DiffusionWorker(pipeline, { rank: 0, batching, maxBatchRows: 16 });
    const log = new ProgressLog();
    const ctx = { onProgress: log.onProgress };
    resolved = 0;
    const outs = await Promise.all([
      worker.generateOutput([request("X1", { seed: 1 }).toDict(), request("X2", { seed: 2, guidanceScale: 1 }).toDict()], ctx),
      worker.generateOutput([request("Y1", { seed: 3, numInferenceSteps: 3 }).toDict()], ctx),
    ]);
    for (const o of outs) assert.deepEqual(o.errors, {});
    assert.equal(outs[0]!.output.length + outs[1]!.output.length, 3);
    assert.equal(resolved, 3, "each request resolved once");
    const stats = worker.getStats();
    return { log, stats };
  }

  it("none: every UNet call holds one request, and one request runs at a time", async () => {
    const { log, stats } = await twoCalls("none");
    assert.equal(stats.batching, "none");
    assert.ok(log.events.every((e) => e.batch?.requests === 1), JSON.stringify(log.events.map((e) => e.batch)));
    // Requests never interleave: once a request's events start, they run to its last step.
    const order = log.events.map((e) => e.requestId).filter((id, i, a) => i === 0 || a[i - 1] !== id);
    assert.equal(new Set(order).size, order.length, `interleaved: ${order.join(" ")}`);
  });

  it("request: one call's requests share UNet calls, and the next call starts after they all finished", async () => {
    const { log } = await twoCalls("request");
    const lastX = Math.max(log.events.findLastIndex((e) => e.requestId === "X1"), log.events.findLastIndex((e) => e.requestId === "X2"));
    assert.ok(log.indexOf("Y1") > lastX, "Y1 waited for call X");
    assert.ok(log.of("X1").every((e) => e.batch?.requests === 2), "X1 and X2 stepped together");
    assert.ok(log.of("Y1").every((e) => e.batch?.requests === 1));
  });

  it("continuous: the two calls share UNet calls; getStats reports where the loop's time went and the UNet profile", async () => {
    const { log, stats } = await twoCalls("continuous");
    assert.ok(log.of("Y1").some((e) => e.batch?.requests === 3), JSON.stringify(log.of("Y1").map((e) => e.batch)));
    const l = stats.loop!;
    assert.ok(l.unetCalls >= 4 && l.unetRows >= l.unetCalls, JSON.stringify(l));
    assert.ok(l.unetMs > 0 && l.stepMs >= l.unetMs && l.busyMs >= l.stepMs + l.encodeTextMs + l.decodeMs);
    // The UNet profile the worker learned from its own calls, per image size (its figures are this machine's).
    assert.equal(stats.callBudget?.maxCallMs, "auto");
    const sizes = stats.callBudget!.sizes;
    assert.deepEqual(sizes.map((s) => s.size), ["32x32"]);
    assert.ok(sizes[0]!.calls.length >= 1 && sizes[0]!.calls.every((c) => c.rows >= 1 && c.n >= 1 && c.ms > 0), JSON.stringify(sizes));
  });

  it("pipeline.generate is the same loop with request admission: per-request failures, the rest run", async () => {
    const out = await pipeline.generate([request("ok"), request("bad", { scheduler: "nope" })]);
    assert.equal(out.imagesFor("ok").length, 1);
    assert.equal(out.errors.bad?.code, "OMNI_ERR_VALIDATION");
  });

  it("a pipeline without the step-level interface gets one generate call at a time, per-request previews passed through", async () => {
    // A third-party pipeline's shape: only generate (here delegating to the real pipeline), no prepare/step/decode.
    let running = 0;
    let overlapped = false;
    const seen: GenerateOptions["previewEvery"][] = [];
    const plain: DiffusionPipeline = {
      get info() {
        return pipeline.info;
      },
      validate: (r) => pipeline.validate(r),
      release: async () => {},
      reload: async () => {},
      generate: async (requests, opts): Promise<DiffusionOutput> => {
        overlapped ||= running > 0;
        running++;
        seen.push(opts?.previewEvery);
        try {
          return await pipeline.generate(requests, opts);
        } finally {
          running--;
        }
      },
    };
    const worker = new DiffusionWorker(plain, { rank: 0, batching: "continuous" });
    const outs = await Promise.all([
      worker.generateOutput([request("P1").toDict()], { previewEvery: { P1: 2 }, onProgress: () => {} }),
      worker.generateOutput([request("P2").toDict(), { ...request("bad").toDict(), num_inference_steps: 0 }], {}),
    ]);
    assert.equal(overlapped, false, "generate calls ran one at a time");
    assert.deepEqual(seen[0], { P1: 2 });
    assert.equal(outs[0]!.output.length, 1);
    assert.equal(outs[1]!.output.length, 1);
    assert.equal(outs[1]!.errors.bad?.code, "OMNI_ERR_VALIDATION", "the bad request failed validation alone");
    const stats = worker.getStats();
    assert.equal(stats.loop, null);
    assert.equal(stats.batching, "request");
  });
});
