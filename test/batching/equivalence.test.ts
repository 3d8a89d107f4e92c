/**
 * The batching policies change who shares a UNet call, never what a request computes: a fixed set of
 * seeded requests (mixed steps, guidance, samplers, sizes, n) gives the same images under `none`,
 * `request` and `continuous`, in-process and across the worker-process boundary.
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { parseConfig, type BatchingPolicy, type OmniDiffusionConfigInput } from "../../src/core/config.js";
import { DiffusionEngine, type StepEvent } from "../../src/engine/engine.js";
import type { GeneratedImage } from "../../src/core/output.js";
import type { OmniDiffusionRequestInit } from "../../src/core/request.js";
import { ConfigError } from "../../src/errors/omni-error.js";
import { identical, pixelDiff } from "./helpers.js";

const REQUESTS: OmniDiffusionRequestInit[] = [
  { prompt: "a red circle on a blue background", seed: 11, numInferenceSteps: 2, guidanceScale: 4 },
  { prompt: "a yellow star on a black background", seed: 12, numInferenceSteps: 4, guidanceScale: 1 },
  { prompt: "a white cross on a green background", seed: 13, numInferenceSteps: 6, guidanceScale: 7.5, numOutputsPerPrompt: 2 },
  { prompt: "a blue square on a white background", seed: 14, numInferenceSteps: 3, width: 64, height: 64 },
  { prompt: "a green triangle on a red background", seed: 15, numInferenceSteps: 5, guidanceScale: 3, scheduler: "euler_a" },
  { prompt: "a black circle on a yellow background", seed: 16, numInferenceSteps: 4, guidanceScale: 1, scheduler: "dpmpp_2m" },
  { prompt: "a red star on a white background", seed: 17, numInferenceSteps: 3, negativePrompt: "a blue square" },
];

interface Run {
  images: GeneratedImage[][];
  maxRows: number;
  batching: BatchingPolicy;
}

/** All requests at once on a fresh engine; every request's images, and the most UNet rows one call had. */
async function runAll(config: OmniDiffusionConfigInput): Promise<Run> {
  // 64x64 is off the model's native 32x32: the mix of sizes is the point here.
  const engine = await DiffusionEngine.create({ intraOpNumThreads: 1, allowNonNativeSizes: true, ...config });
  try {
    let maxRows = 0;
    const sub = engine.onStep((e: StepEvent) => (maxRows = Math.max(maxRows, e.batch?.rows ?? 0)));
    const outs = await Promise.all(REQUESTS.map((r) => engine.generate({ width: 32, height: 32, ...r })));
    sub.dispose();
    return { images: outs.map((o) => o.images), maxRows, batching: engine.batching };
  } finally {
    await engine.close();
  }
}

describe("batching policies give the same images", { timeout: 150_000 }, () => {
  // The reference run is made on first use, so each test runs alone too (--test-name-pattern, reordering).
  let none: Promise<Run> | undefined;
  const reference = () => (none ??= runAll({ executorClass: "uniproc", batching: "none" }));
  after(() => (none = undefined));

  const compare = async (name: string, run: Run) => {
    const base = await reference();
    let same = 0;
    let total = 0;
    run.images.forEach((imgs, i) => {
      assert.equal(imgs.length, base.images[i]!.length, `request ${i}: image count`);
      imgs.forEach((img, k) => {
        const ref = base.images[i]![k]!;
        assert.deepEqual([img.seed, img.width, img.height], [ref.seed, ref.width, ref.height]);
        const d = pixelDiff(img, ref);
        assert.ok(d <= 2, `${name}: request ${i} image ${k} differs from "none" by ${d}`);
        total++;
        if (identical(img, ref)) same++;
      });
    });
    return { same, total };
  };

  it("none: one request at a time (the reference)", async () => {
    assert.equal((await reference()).batching, "none");
  });

  it("request: batches of compatible requests match", async (t) => {
    const { same, total } = await compare("request", await runAll({ executorClass: "uniproc", batching: "request" }));
    t.diagnostic(`${same}/${total} images byte-identical to "none"`);
  });

  it("continuous: requests sharing UNet calls match, and calls did mix requests", async (t) => {
    const run = await runAll({ executorClass: "uniproc", batching: "continuous" });
    assert.equal(run.batching, "continuous");
    const { same, total } = await compare("continuous", run);
    assert.ok(run.maxRows > 2, `some UNet call held several requests (max rows ${run.maxRows})`);
    assert.equal(total, 8);
    t.diagnostic(`${same}/${total} images byte-identical to "none"; largest UNet call ${run.maxRows} rows`);
  });

  it("continuous across the worker-process boundary (multiproc, the default executor) matches too", async (t) => {
    const run = await runAll({ numGpus: 1 });
    assert.equal(run.batching, "continuous", "continuous is the default policy");
    const { same, total } = await compare("multiproc", run);
    t.diagnostic(`${same}/${total} images byte-identical to "none"`);
    assert.ok(run.maxRows > 2, `progress from the worker process carries the UNet call (max rows ${run.maxRows})`);
  });
});

describe("batching config", () => {
  it("defaults to continuous with 32 rows per UNet call and a learned compute budget, and rejects bad values naming the field", () => {
    const c = parseConfig({});
    assert.equal(c.batching, "continuous");
    assert.equal(c.maxBatchRows, 32);
    assert.throws(() => parseConfig({ batching: "greedy" as never }), (e: unknown) => e instanceof ConfigError && e.data.field === "batching");
    assert.throws(() => parseConfig({ maxBatchRows: 0 }), (e: unknown) => e instanceof ConfigError && e.data.field === "maxBatchRows");
    assert.throws(() => parseConfig({ maxBatchRows: 2.5 }), (e: unknown) => e instanceof ConfigError && e.data.field === "maxBatchRows");
    assert.equal(c.maxCallMs, "auto", "the compute budget of a UNet call is learned by default");
    assert.equal(parseConfig({ maxCallMs: 250 }).maxCallMs, 250);
    assert.equal(parseConfig({ maxCallMs: "off" }).maxCallMs, "off");
    for (const bad of [0, -1, "fast"]) assert.throws(() => parseConfig({ maxCallMs: bad as never }), (e: unknown) => e instanceof ConfigError && e.data.field === "maxCallMs");
  });
});
