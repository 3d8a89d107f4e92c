import assert from "node:assert/strict";
import { totalmem } from "node:os";
import { after, before, describe, test } from "node:test";
import {
  AbortedError,
  ClosedError,
  ConfigError,
  DiffusionEngine,
  DiffusionOutput,
  DiffusionExecutor,
  ExecutorResolutionError,
  ExecutorTypeError,
  LimitExceededError,
  OmniDiffusionRequest,
  UnknownMethodError,
  ValidationError,
} from "../../src/index.js";
import { MyExecutor } from "../../examples/example_custom_executor.js";
import { STEP_GATE, stepGate } from "../helpers/step-gate.js";

const quick = { numInferenceSteps: 2 };

describe("DiffusionEngine on the default multi-process executor", () => {
  let engine: DiffusionEngine;
  // The workers' denoising steps pass a gate the tests can close (test/fixtures/workers/step-gate.ts): a
  // request held at a step is surely still running when a test aborts it, however fast the machine.
  before(async () => {
    engine = await DiffusionEngine.create({ numGpus: 2, intraOpNumThreads: 1, limits: { maxSteps: 1000 }, workerExtension: STEP_GATE });
  });
  after(() => engine.close());

  test("step() as in the quick-start returns one output per request, in request order", async () => {
    const reqs = [
      new OmniDiffusionRequest({ prompt: "a red circle on a blue background", seed: 42, ...quick }),
      new OmniDiffusionRequest({ prompt: "a green star on a white background", seed: 43, ...quick }),
      new OmniDiffusionRequest({ prompt: "bad", width: 33, ...quick }),
    ];
    const outs = await engine.step(reqs);
    assert.deepEqual(outs.map((o) => o.requestId), reqs.map((r) => r.requestId));
    assert.equal(outs[0]!.images.length, 1);
    assert.equal(outs[0]!.seed, 42);
    assert.equal(outs[1]!.seed, 43);
    assert.ok(outs[2]!.error instanceof ValidationError, String(outs[2]!.error));
    assert.equal((outs[2]!.error as ValidationError).field, "width");
    assert.equal(outs[2]!.images.length, 0);
  });

  test("20 concurrent generate() calls with different prompts each get their own image", async () => {
    const prompts = Array.from({ length: 20 }, (_, i) => ({ prompt: `a ${["red", "blue", "green", "yellow"][i % 4]} ${["circle", "square", "star", "cross", "triangle"][i % 5]} on a black background`, seed: 1000 + i, ...quick }));
    const outs = await Promise.all(prompts.map((p) => engine.generate(p)));
    const ids = new Set(outs.map((o) => o.requestId));
    assert.equal(ids.size, 20);
    outs.forEach((o, i) => {
      assert.equal(o.prompt, prompts[i]!.prompt);
      assert.equal(o.images[0]!.seed, 1000 + i);
      assert.equal(o.images[0]!.requestId, o.requestId);
    });
    // Spot-check the mapping against sequential runs: same prompt + seed → same pixels.
    for (const i of [0, 7, 19]) {
      const alone = await engine.generate(prompts[i]!);
      let maxDiff = 0;
      const a = alone.images[0]!.data;
      const b = outs[i]!.images[0]!.data;
      for (let k = 0; k < a.length; k++) maxDiff = Math.max(maxDiff, Math.abs(a[k]! - b[k]!));
      assert.ok(maxDiff <= 2, `request ${i}: concurrent and sequential images differ by ${maxDiff}`);
    }
  });

  test("limits are enforced with the field named", async () => {
    await assert.rejects(engine.generate({ prompt: "x", numInferenceSteps: 10_000 }), (e: unknown) => e instanceof LimitExceededError && e.field === "numInferenceSteps" && /at most 1000 steps/.test(e.message));
    await assert.rejects(engine.generate({ prompt: "x", width: 4096 }), (e: unknown) => e instanceof ValidationError && e.field === "width");
  });

  test("the model's limits come from the worker (describeModel) and are checked before anything runs", async () => {
    assert.deepEqual(engine.modelLimits, {
      nativeWidth: 32,
      nativeHeight: 32,
      spatial: "dynamic",
      sizeMultiple: 8,
      predictionType: "v_prediction",
      // pndm fits v_prediction, but the model's scheduler_config.json declares it unfit (with the reason, checked below).
      schedulers: ["euler", "euler_karras", "euler_a", "euler_ancestral", "ddim", "dpmpp_2m", "dpmpp_2m_karras", "lcm"],
      unfitSchedulers: { pndm: engine.modelLimits!.unfitSchedulers!.pndm! },
      bytesPerRowAtNative: (2 * 3 * 32 * 32 + 16 * 128) * 4 * 32,
      // The weights on disk, the pixel-space estimate (all of it quadratic above the native size), and the worker's share of this machine.
      memory: { weightBytes: engine.modelLimits!.memory!.weightBytes, unetLinearBytes: 0, unetQuadraticBytes: (2 * 3 * 32 * 32 + 16 * 128) * 4 * 32, decodeBytes: 0, budgetBytes: Math.floor((totalmem() * 0.9) / 2) },
    });
    assert.ok(engine.modelLimits!.memory!.weightBytes > 1_000_000);
    assert.match(engine.modelLimits!.unfitSchedulers!.pndm!, /^PLMS .*wrong colours/);
    // Was: accepted up to the old 1024 default, then 5.8 GB (384²) or an onnxruntime allocation failure (512²+).
    for (const size of [64, 384, 1024]) {
      await assert.rejects(engine.generate({ prompt: "x", width: size, height: size }), (e: unknown) => e instanceof LimitExceededError && /32x32 only/.test(e.message));
    }
    // Was: advertised, then failed at run time.
    await assert.rejects(
      engine.generate({ prompt: "x", scheduler: "flow_euler" }),
      (e: unknown) => e instanceof ValidationError && e.field === "scheduler" && /use one of: euler, .*dpmpp_2m_karras, lcm/.test(e.message),
    );
    await assert.rejects(engine.generate({ prompt: "" }), (e: unknown) => e instanceof ValidationError && e.field === "prompt");
  });

  test("step(): a request that cannot be built (numInferenceSteps: 0) fails alone, its neighbours run", async () => {
    // Was: the constructor threw out of step() and the whole list failed.
    const outs = await engine.step([
      { prompt: "a red circle on a blue background", seed: 1, ...quick },
      { prompt: "x", numInferenceSteps: 0, requestId: "zero-steps" },
    ]);
    assert.equal(outs[0]!.images.length, 1);
    assert.equal(outs[1]!.requestId, "zero-steps");
    assert.ok(outs[1]!.error instanceof ValidationError && outs[1]!.error.field === "numInferenceSteps", String(outs[1]!.error));
  });

  test("a duplicate request id in flight is refused, not run twice", async () => {
    const r = new OmniDiffusionRequest({ prompt: "a red circle", requestId: "dup-1", numInferenceSteps: 4 });
    const [a, b] = await Promise.allSettled([engine.generate(r), engine.generate(r)]);
    assert.equal(a.status, "fulfilled");
    assert.equal(b.status, "rejected");
    assert.match(String((b as PromiseRejectedResult).reason), /already in use/);
  });

  test("abort() stops a running request between steps; the others finish", async () => {
    const gate = stepGate(engine);
    const long = new OmniDiffusionRequest({ prompt: "a red circle", numInferenceSteps: 40, seed: 1 });
    const short = new OmniDiffusionRequest({ prompt: "a blue square", numInferenceSteps: 2, seed: 2 });
    // The long request waits after its first step until it is aborted (an abort opens its gate).
    await gate.hold(1, long.requestId);
    let started!: () => void;
    const progressed = new Promise<void>((r) => (started = r));
    const pLong = engine.generate(long, { onProgress: (p) => p.step >= 1 && started() });
    const pShort = engine.generate(short);
    try {
      await progressed;
      // Watched before the abort: the error can settle the request before abort() itself resolves.
      const rejected = assert.rejects(pLong, (e: unknown) => e instanceof AbortedError && (e.data.step as number) === 2);
      assert.equal(await engine.abort(long.requestId), true);
      await rejected;
      assert.equal((await pShort).images.length, 1);
    } finally {
      await gate.release();
    }
  });

  test("an AbortSignal aborts a request", async () => {
    const gate = stepGate(engine);
    const r = new OmniDiffusionRequest({ prompt: "a red circle", numInferenceSteps: 40 });
    await gate.hold(1, r.requestId);
    const ac = new AbortController();
    try {
      const p = engine.generate(r, { signal: ac.signal, onProgress: () => ac.abort() });
      await assert.rejects(p, AbortedError);
    } finally {
      await gate.release();
    }
  });

  test("collectiveRpc passes through to every rank", async () => {
    const replies = (await engine.collectiveRpc("ping")) as { rank: number }[];
    assert.deepEqual(replies.map((r) => r.rank), [0, 1]);
    await engine.checkHealth();
  });
});

describe("custom executors", () => {
  test("by class", async () => {
    const engine = await DiffusionEngine.create({ executorClass: MyExecutor });
    try {
      assert.ok(engine.executor instanceof MyExecutor);
      const [out] = await engine.step([new OmniDiffusionRequest({ prompt: "a red circle on a blue background", seed: 42, ...quick })]);
      assert.equal(out!.images.length, 1);
      await engine.checkHealth();
    } finally {
      await engine.close();
    }
  });

  test("by string path, as in the quick-start", async () => {
    const engine = await DiffusionEngine.create({ model: "models/tiny-shapes", numGpus: 1, executorClass: "./examples/example_custom_executor.ts#MyExecutor" });
    try {
      assert.equal(engine.executor.constructor.name, "MyExecutor");
      const outputs = await engine.step([new OmniDiffusionRequest({ prompt: "a red circle on a blue background", seed: 42, ...quick })]);
      assert.equal(outputs[0]!.images[0]!.width, 32);
    } finally {
      await engine.close();
    }
  });

  test("every bad executorClass fails with one clear error", async () => {
    class NotAnExecutor {}
    const cases: [unknown, new (...a: never[]) => Error, RegExp][] = [
      [NotAnExecutor, ExecutorTypeError, /must extend DiffusionExecutor/],
      [42, ConfigError, /executorClass: must be a built-in executor name, a "module#Export" string, or a DiffusionExecutor subclass/],
      ["no-such-executor", ExecutorResolutionError, /not a built-in executor/],
      ["./examples/missing-file.ts#X", ExecutorResolutionError, /missing-file/],
      ["./examples/example_custom_executor.ts#Nope", ExecutorResolutionError, /Nope/],
    ];
    for (const [spec, Cls, re] of cases) {
      await assert.rejects(DiffusionEngine.create({ executorClass: spec as never }), (e: unknown) => {
        assert.ok(e instanceof Cls, `${String(spec)}: got ${e}`);
        assert.match((e as Error).message, re);
        return true;
      });
    }
  });

  test("an executor that cannot describe its model gets the config limits only", async () => {
    class Opaque extends DiffusionExecutor {
      protected async initExecutor() {}
      async collectiveRpc(method: string) {
        throw new UnknownMethodError(`no method ${method}`);
      }
      override async executeModel(requests: OmniDiffusionRequest[]) {
        const output = requests.map((r) => ({ requestId: r.requestId, index: 0, seed: 0, width: r.width ?? 8, height: r.height ?? 8, data: new Uint8Array((r.width ?? 8) * (r.height ?? 8) * 3) }));
        return new DiffusionOutput({ output });
      }
      async checkHealth() {}
      protected async shutdown() {}
    }
    const engine = await DiffusionEngine.create({ executorClass: Opaque, limits: { maxWidth: 64 } });
    try {
      assert.equal(engine.modelLimits, null);
      assert.equal((await engine.generate({ prompt: "x", width: 48, height: 48 })).images[0]!.width, 48, "no model: any size within the config");
      await assert.rejects(engine.generate({ prompt: "x", width: 72, height: 48 }), (e: unknown) => e instanceof LimitExceededError && e.field === "width");
    } finally {
      await engine.close();
    }
  });

  test("a failing initExecutor fails create() and still shuts down", async () => {
    let shutdowns = 0;
    class Broken extends DiffusionExecutor {
      protected async initExecutor() {
        throw new ValidationError("cannot connect to my system");
      }
      async collectiveRpc() {
        return [];
      }
      async checkHealth() {}
      protected async shutdown() {
        shutdowns++;
      }
    }
    await assert.rejects(DiffusionEngine.create({ executorClass: Broken }), /cannot connect to my system/);
    assert.equal(shutdowns, 1);
  });
});

describe("close()", () => {
  test("with requests in flight: each gets an image or a ClosedError; later calls fail clearly; idempotent", async () => {
    const engine = await DiffusionEngine.create({ numGpus: 1, intraOpNumThreads: 1, limits: { maxBatchSize: 2 } });
    // Latch: close once the first requests are denoising (2 in flight at maxBatchSize 2, 4 still queued).
    const denoising = new Promise<void>((resolve) => engine.onStep(() => resolve()));
    const pending = Array.from({ length: 6 }, (_, i) => engine.step([{ prompt: `a red circle ${i}`, numInferenceSteps: 3, seed: i }]).then((o) => o[0]!));
    await denoising;
    await Promise.all([engine.close(), engine.close()]);
    const outs = await Promise.all(pending);
    for (const o of outs) assert.ok(o.images.length === 1 || o.error instanceof ClosedError, `${o.requestId}: ${o.error}`);
    assert.ok(outs.some((o) => o.error instanceof ClosedError), "queued requests were failed, not dropped");
    await assert.rejects(engine.generate({ prompt: "late" }), ClosedError);
    await assert.rejects(engine.checkHealth(), ClosedError);
    await engine.close();
  });
});
