/**
 * Continuous batching inside one worker: requests with different step counts and shapes join a running
 * step loop at different times, leave as soon as they finish, and an abort mid-crowd stops only its own
 * request. Every image must match the same request run alone. The worker prices calls with a fixed profile
 * in which batching pays (a call's fixed cost dominates, as on a GPU), so every group here fits one call
 * whatever this machine's timing.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { DiffusionOutput } from "../../src/core/output.js";
import type { OmniDiffusionRequest } from "../../src/core/request.js";
import { AbortedError } from "../../src/errors/omni-error.js";
import { loadPipeline } from "../../src/pipelines/load.js";
import { UnetProfile } from "../../src/pipelines/unet-profile.js";
import type { DiffusionPipeline } from "../../src/pipelines/types.js";
import { DiffusionWorker } from "../../src/workers/diffusion-worker.js";
import { MODEL_DIR } from "../helpers/model.js";
import { ProgressLog, pixelDiff, request, twin } from "./helpers.js";

describe("continuous batching: joining and leaving", { timeout: 120_000 }, () => {
  let pipeline: DiffusionPipeline;
  let worker: DiffusionWorker;
  before(async () => {
    pipeline = await loadPipeline(MODEL_DIR, { intraOpNumThreads: 1 });
    const unetProfile = new UnetProfile({ fixed: { "32x32": { fixedMs: 10, perRowMs: 1 }, "64x64": { fixedMs: 10, perRowMs: 4 } }, learn: false });
    worker = new DiffusionWorker(pipeline, { rank: 0, batching: "continuous", maxBatchRows: 16, unetProfile });
  });
  after(() => worker.close());

  const run = (r: OmniDiffusionRequest, log: ProgressLog): Promise<DiffusionOutput> =>
    worker.generateOutput([r.toDict()], { onProgress: log.onProgress }).then((out) => {
      log.done.push(r.requestId);
      return out;
    });

  /** Each image equals the one the same request gives alone (pipeline.generate, nobody else in the call). */
  async function assertMatchesAlone(out: DiffusionOutput, r: OmniDiffusionRequest): Promise<void> {
    assert.deepEqual(out.errors, {}, `${r.requestId}: ${JSON.stringify(out.errors)}`);
    const alone = await pipeline.generate([twin(r, `${r.requestId}-alone`)]);
    const got = out.imagesFor(r.requestId);
    assert.equal(got.length, r.numOutputsPerPrompt);
    got.forEach((img, k) => {
      const d = pixelDiff(img, alone.output[k]!);
      assert.ok(d <= 2, `${r.requestId} image ${k}: max pixel difference ${d} to its run alone`);
    });
  }

  it("requests with different step counts and shapes, submitted at different times, share steps and leave when done", async () => {
    const log = new ProgressLog();
    const a = request("A", { numInferenceSteps: 12, seed: 21, guidanceScale: 4 });
    const b = request("B", { numInferenceSteps: 4, seed: 22, guidanceScale: 1, prompt: "a yellow star on a black background" });
    const c = request("C", { numInferenceSteps: 6, seed: 23, width: 64, height: 64, scheduler: "euler_a", prompt: "a white cross on a green background" });
    const pa = run(a, log);
    await log.reached("A", 3);
    const pb = run(b, log);
    await log.reached("B", 2);
    const pc = run(c, log);
    const [oa, ob, oc] = await Promise.all([pa, pb, pc]);

    // B joined A's running loop: they shared UNet calls (3 rows: A with guidance, B without).
    const shared = log.of("B").filter((e) => e.batch?.requests === 2);
    assert.ok(shared.length >= 1, `B shared a UNet call with A: ${JSON.stringify(log.of("B").map((e) => e.batch))}`);
    assert.ok(shared.every((e) => e.batch!.rows === 3));
    // B left first, and A went on alone in its shape group after that.
    assert.deepEqual(log.done.slice(0, 1), ["B"]);
    assert.ok(log.done.indexOf("B") < log.done.indexOf("A"));
    const aAfterB = log.events.slice(log.events.findIndex((e) => e.requestId === "B" && e.step === 4) + 1).filter((e) => e.requestId === "A");
    assert.ok(aAfterB.length > 0 && aAfterB.every((e) => e.batch?.requests === 1), "A runs alone once B left");
    // C (another latent shape) progressed while A was still running: the groups take turns.
    assert.ok(log.indexOf("C", 1) < log.indexOf("A", 12), "C's first step came before A's last");
    // Step counts are each request's own.
    assert.deepEqual([a, b, c].map((r) => log.of(r.requestId).map((e) => e.step)), [a, b, c].map((r) => Array.from({ length: r.numInferenceSteps! }, (_, i) => i + 1)));

    await assertMatchesAlone(oa, a);
    await assertMatchesAlone(ob, b);
    await assertMatchesAlone(oc, c);
  });

  it("an abort in the middle of a crowd stops only its own request", async () => {
    const log = new ProgressLog();
    const x = request("X", { numInferenceSteps: 8, seed: 31 });
    const y = request("Y", { numInferenceSteps: 8, seed: 32, prompt: "a blue square on a white background" });
    const z = request("Z", { numInferenceSteps: 8, seed: 33, guidanceScale: 1, numOutputsPerPrompt: 2 });
    const outs = [x, y, z].map((r) => run(r, log));
    await log.reached("Y", 2);
    assert.equal(worker.abort("Y"), true);
    const [ox, oy, oz] = await Promise.all(outs);

    const err = oy.errors["Y"];
    assert.ok(err instanceof AbortedError, `Y: AbortedError, got ${err?.name}: ${err?.message}`);
    assert.ok((err.data.step as number) >= 2 && (err.data.step as number) < 8, `stopped at step ${String(err.data.step)}`);
    assert.equal(oy.imagesFor("Y").length, 0);
    // X and Z kept stepping together after Y left.
    const lastY = log.events.findLastIndex((e) => e.requestId === "Y");
    const xLater = log.events.slice(lastY + 1).filter((e) => e.requestId === "X");
    assert.ok(xLater.length > 0 && xLater.every((e) => e.batch?.requests === 2), "X and Z share the calls after the abort");
    await assertMatchesAlone(ox, x);
    await assertMatchesAlone(oz, z);
    assert.equal(worker.getStats().inFlight, 0);
  });
});
