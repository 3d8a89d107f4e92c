/**
 * Fairness of the continuous step loop: a steady stream of small requests starves neither a request of
 * another latent shape (the groups share the UNet in cost) nor a request too big to join its size's group
 * (small ones behind it must not keep jumping the queue). The worker prices calls with a fixed profile, so
 * the order of calls does not depend on this machine's timing.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { DiffusionOutput } from "../../src/core/output.js";
import type { OmniDiffusionRequest } from "../../src/core/request.js";
import { loadPipeline } from "../../src/pipelines/load.js";
import { UnetProfile } from "../../src/pipelines/unet-profile.js";
import { DiffusionWorker } from "../../src/workers/diffusion-worker.js";
import { MODEL_DIR } from "../helpers/model.js";
import { ProgressLog, request } from "./helpers.js";

/** Most small requests a stream may send before the big one must have finished. */
const STREAM_CAP = 120;
/**
 * A 64x64 row costs 4 of 32x32 (4x the pixels), each call 1 ms more. With maxBatchRows 8 the knees are 6
 * rows at 32x32 (7 ms: three guided requests) and 3 rows at 64x64.
 */
const PROFILE = { "32x32": { fixedMs: 1, perRowMs: 1 }, "64x64": { fixedMs: 1, perRowMs: 4 } };

describe("continuous batching fairness", { timeout: 120_000 }, () => {
  let worker: DiffusionWorker;
  before(async () => {
    worker = new DiffusionWorker(await loadPipeline(MODEL_DIR, { intraOpNumThreads: 1 }), {
      rank: 0,
      batching: "continuous",
      maxBatchRows: 8,
      unetProfile: new UnetProfile({ fixed: PROFILE, learn: false }),
    });
  });
  after(() => worker.close());

  /**
   * Keeps `width` small 32x32 requests (2 UNet rows each) in flight, replacing each as it finishes, until
   * `big` finished or STREAM_CAP were sent. Resolves with the big output and the small requests finished
   * while it ran.
   */
  async function underStream(big: OmniDiffusionRequest, width: number, log: ProgressLog): Promise<{ out: DiffusionOutput; smallsDone: number; streaming: boolean }> {
    let sent = 0;
    let smallsDone = 0;
    let bigDone = false;
    const small = async (): Promise<void> => {
      while (!bigDone && sent < STREAM_CAP) {
        const r = request(`small-${sent++}`, { numInferenceSteps: 3, seed: 100 + sent, guidanceScale: 4 });
        const out = await worker.generateOutput([r.toDict()], { onProgress: log.onProgress });
        assert.deepEqual(out.errors, {});
        smallsDone++;
      }
    };
    const streams = Array.from({ length: width }, () => small());
    // The big request arrives once the stream is in full swing.
    await log.reached("small-0", 1);
    const out = await worker.generateOutput([big.toDict()], { onProgress: log.onProgress });
    bigDone = true;
    const streaming = sent < STREAM_CAP;
    const doneWhileBig = smallsDone;
    await Promise.all(streams);
    return { out, smallsDone: doneWhileBig, streaming };
  }

  it("a request of another latent shape keeps progressing while smaller-shape requests outnumber it", async () => {
    const log = new ProgressLog();
    const big = request("big-shape", { width: 64, height: 64, numInferenceSteps: 6, guidanceScale: 1, seed: 7 });
    const { out, smallsDone, streaming } = await underStream(big, 3, log);
    assert.deepEqual(out.errors, {});
    assert.equal(out.imagesFor("big-shape").length, 1);
    assert.ok(streaming, `the 64x64 request finished while the stream still ran (${smallsDone} small requests finished meanwhile)`);
    // Every row is owed the same UNet time. Between two of its steps (5 ms for its 1 row), the big request
    // waits while the 32x32 group catches up those 5 ms per row: its calls cost at least 7/6 ms per row
    // (three guided requests, 7 ms for 6 rows), so at most five of them, six with a tie.
    const idx = log.events.map((e, i) => (e.requestId === "big-shape" ? i : -1)).filter((i) => i >= 0);
    for (let k = 1; k < idx.length; k++) {
      // Each UNet call has exactly one primary progress event.
      const between = log.events.slice(idx[k - 1]! + 1, idx[k]).filter((e) => e.batch?.primary).length;
      assert.ok(between <= 6, `${between} UNet calls ran between steps ${k} and ${k + 1} of the 64x64 request`);
    }
  });

  it("a request too big to join a full active set is admitted before later small ones", async () => {
    const log = new ProgressLog();
    // 4 images with guidance: 8 rows (9 ms), over the 7 ms budget: it runs alone once the 32x32 requests
    // before it left, and the stream's later ones wait behind it.
    const big = request("big-n", { numOutputsPerPrompt: 4, numInferenceSteps: 4, guidanceScale: 4, seed: 9 });
    const { out, streaming } = await underStream(big, 3, log);
    assert.deepEqual(out.errors, {});
    assert.equal(out.imagesFor("big-n").length, 4);
    assert.ok(streaming, "the big request finished while the stream still ran");
    // It ran with its size group to itself: 8 rows per call.
    assert.ok(log.of("big-n").every((e) => e.batch?.rows === 8), JSON.stringify(log.of("big-n").map((e) => e.batch?.rows)));
  });
});
