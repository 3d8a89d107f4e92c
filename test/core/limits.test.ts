/**
 * The one limits module (core/limits.ts): every entry point refuses the same requests, naming the field the
 * way its caller spelled it. Pure checks here; the entry points are exercised in engine/server/CLI tests.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { parseConfig, requestLimitsOf } from "../../src/core/config.js";
import {
  DEFAULT_REQUEST_LIMITS,
  checkRequestLimits,
  estimateRequestBytes,
  maxSizeFor,
  prefixedFields,
  snakeCaseFields,
  tightenLimits,
  type LimitedRequest,
  type RequestLimits,
} from "../../src/core/limits.js";
import { parseModelLimits, type ModelLimits } from "../../src/core/model-limits.js";
import { LimitExceededError, ValidationError, deserializeError, serializeError } from "../../src/errors/omni-error.js";
import { SCHEDULER_NAMES } from "../../src/schedulers/index.js";
import { OmniDiffusionRequest } from "../../src/core/request.js";
import { DiffusionEngine } from "../../src/engine/engine.js";
import { startTestWorker } from "../helpers/worker-servers.js";

const TINY: ModelLimits = {
  nativeWidth: 32,
  nativeHeight: 32,
  spatial: "dynamic",
  sizeMultiple: 8,
  predictionType: "v_prediction",
  schedulers: ["euler", "euler_karras", "euler_a", "euler_ancestral", "ddim", "dpmpp_2m", "dpmpp_2m_karras", "lcm"],
  bytesPerRowAtNative: 1024 ** 2,
};

function refusal(req: LimitedRequest, limits: RequestLimits = DEFAULT_REQUEST_LIMITS, model: ModelLimits | null = TINY, naming = snakeCaseFields) {
  try {
    checkRequestLimits(req, limits, model, { fieldName: naming, knownSchedulers: SCHEDULER_NAMES });
  } catch (err) {
    assert.ok(err instanceof ValidationError, String(err));
    return err;
  }
  return null;
}

test("a request within the limits passes; defaults come from the model", () => {
  assert.equal(refusal({ prompt: "a red circle on a blue background" }), null);
  assert.equal(refusal({ prompt: "x", width: 32, height: 32, numInferenceSteps: 150, numOutputsPerPrompt: 10, scheduler: "Euler-A" }), null);
  assert.deepEqual(maxSizeFor(DEFAULT_REQUEST_LIMITS, TINY), { width: 32, height: 32 });
  assert.deepEqual(maxSizeFor({ ...DEFAULT_REQUEST_LIMITS, allowNonNativeSizes: true }, TINY), { width: 128, height: 128 });
  assert.deepEqual(maxSizeFor(DEFAULT_REQUEST_LIMITS, null), { width: 1024, height: 1024 }, "no model: the old fallback");
});

test("the steps, images and prompt limits name the field in the caller's naming", () => {
  const cases: [LimitedRequest, string, RegExp, boolean][] = [
    [{ prompt: "x", numInferenceSteps: 151 }, "num_inference_steps", /num_inference_steps is 151; at most 150 steps/, true],
    [{ prompt: "x", numInferenceSteps: 0 }, "num_inference_steps", /integer >= 1/, false],
    [{ prompt: "x", numOutputsPerPrompt: 11 }, "num_outputs_per_prompt", /at most 10 images/, true],
    [{ prompt: "" }, "prompt", /must not be empty/, false],
    [{ prompt: "   " }, "prompt", /must not be empty/, false],
    [{ prompt: "x".repeat(10_001) }, "prompt", /10001 characters; the limit is 10000/, true],
    [{ prompt: "x", negativePrompt: "y".repeat(10_001) }, "negative_prompt", /negative_prompt has 10001/, true],
  ];
  for (const [req, field, re, isLimit] of cases) {
    const e = refusal(req);
    assert.ok(e, `${JSON.stringify(req).slice(0, 60)} was accepted`);
    assert.equal(e.field, field);
    assert.match(e.message, re);
    assert.equal(e instanceof LimitExceededError, isLimit, e.message);
    assert.equal(e.statusCode, 400);
  }
  const camel = refusal({ prompt: "x", numInferenceSteps: 1000 }, DEFAULT_REQUEST_LIMITS, TINY, (f) => f);
  assert.equal(camel?.field, "numInferenceSteps");
  const wire = refusal({ prompt: "x", numInferenceSteps: 1000 }, DEFAULT_REQUEST_LIMITS, TINY, prefixedFields("requests.2."));
  assert.equal(wire?.field, "requests.2.num_inference_steps");
});

test("non-native sizes are refused by default, naming the allowed sizes; the opt-in allows multiples within the budget", () => {
  const e = refusal({ prompt: "x", width: 64, height: 64 });
  assert.ok(e instanceof LimitExceededError);
  assert.equal(e.data.reason, "limit_exceeded");
  assert.match(e.message, /32x32 only/);
  assert.match(e.message, /allowNonNativeSizes/);
  const optIn = { ...DEFAULT_REQUEST_LIMITS, allowNonNativeSizes: true };
  assert.equal(refusal({ prompt: "x", width: 64, height: 48 }, optIn), null);
  assert.match(refusal({ prompt: "x", width: 36, height: 32 }, optIn)!.message, /multiples of 8/);
  assert.equal(refusal({ prompt: "x", width: 36, height: 32 }, optIn)!.data.reason, "invalid_size");
  const big = refusal({ prompt: "x", width: 384, height: 384 }, optIn);
  assert.ok(big instanceof LimitExceededError);
  assert.match(big.message, /larger than the limit of 128x128/);
  // A fixed-size export never runs other sizes, opt-in or not.
  const fixed = refusal({ prompt: "x", width: 64, height: 64 }, optIn, { ...TINY, spatial: "fixed" });
  assert.match(fixed!.message, /fixed size; allowed: 32x32 only/);
});

test("the memory estimate refuses what would not fit the budget, before anything runs", () => {
  const limits = { ...DEFAULT_REQUEST_LIMITS, allowNonNativeSizes: true, maxWidth: 1024, maxHeight: 1024 };
  // 384² on a 32² model: the size that drove a worker to 5.8 GB.
  assert.ok(estimateRequestBytes(TINY, 384, 384, 2) > 5e9);
  const e = refusal({ prompt: "x", width: 384, height: 384 }, limits);
  assert.ok(e instanceof LimitExceededError);
  assert.match(e.message, /estimated .* MiB, above the budget of 2048 MiB/);
  assert.equal(typeof e.data.estimatedBytes, "number");
  // Guidance off halves the rows; more images multiply them.
  assert.equal(estimateRequestBytes(TINY, 32, 32, 1), 1024 ** 2);
  assert.equal(estimateRequestBytes(TINY, 16, 16, 1), 1024 ** 2 / 4, "linear below native");
  assert.equal(estimateRequestBytes(TINY, 64, 64, 1), 16 * 1024 ** 2, "quadratic above native");
  assert.equal(refusal({ prompt: "x", width: 128, height: 128, numOutputsPerPrompt: 4 }, { ...limits, maxRequestBytes: 256 * 1024 ** 2 })?.data.reason, "limit_exceeded");
});

test("samplers that do not fit the model are refused naming the ones that do; unknown names too", () => {
  const e = refusal({ prompt: "x", scheduler: "flow_euler" });
  assert.equal(e?.field, "scheduler");
  assert.equal(e?.data.reason, "unsupported_value");
  assert.match(e!.message, /does not fit this model \(prediction type v_prediction\); use one of: euler, .*lcm/);
  assert.match(refusal({ prompt: "x", scheduler: "plms" })!.message, /Unknown scheduler .plms./);
  assert.equal(refusal({ prompt: "x", scheduler: "flow_euler" }, DEFAULT_REQUEST_LIMITS, null), null, "without a model only the name is checked");
});

test("config → limits, tightening, and the error class survives the process boundary", () => {
  const l = requestLimitsOf(parseConfig({ allowNonNativeSizes: true, limits: { maxSteps: 40 } }));
  assert.equal(l.maxSteps, 40);
  assert.equal(l.allowNonNativeSizes, true);
  assert.equal(l.maxWidth, null);
  const t = tightenLimits(l, { maxSteps: 50, maxWidth: 256, maxOutputsPerPrompt: 4 });
  assert.deepEqual([t.maxSteps, t.maxWidth, t.maxOutputsPerPrompt, t.maxHeight], [40, 256, 4, null]);
  const e = refusal({ prompt: "x", numInferenceSteps: 151 })!;
  const back = deserializeError(JSON.parse(JSON.stringify(serializeError(e))));
  assert.ok(back instanceof LimitExceededError);
  assert.equal((back as LimitExceededError).field, "num_inference_steps");
  assert.equal(back.data.reason, "limit_exceeded");
  assert.throws(() => parseModelLimits({ ...TINY, extra: 1 }), (x: unknown) => x instanceof ValidationError && /extra/.test(x.message));
  assert.throws(() => parseModelLimits({ ...TINY, nativeWidth: undefined }), (x: unknown) => x instanceof ValidationError && x.field === "nativeWidth");
});

test("the CLI refuses what the engine refuses, naming its own flag (the engine's submission is the one check)", async () => {
  const { execFile } = await import("node:child_process");
  const { fileURLToPath } = await import("node:url");
  const cli = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));
  const run = (...args: string[]) =>
    new Promise<{ code: number | null; stderr: string }>((resolve) => {
      execFile(process.execPath, ["--import", "tsx", cli, "generate", ...args, "--out", "/dev/null"], { timeout: 60_000 }, (err, _stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr }),
      );
    });
  // Was: --steps 1000 passed the flag parser, then the engine refused it at 150 after loading the model.
  const steps = await run("a red circle", "--steps", "1000");
  assert.notEqual(steps.code, 0);
  assert.match(steps.stderr, /--steps is 1000; at most 150 steps are allowed \[OMNI_ERR_VALIDATION\]/);
  // Was: an empty prompt ran on the CLI (and on the worker) but was a 422 on the server.
  const empty = await run("");
  assert.notEqual(empty.code, 0);
  assert.match(empty.stderr, /prompt: must not be empty/);
  const n = await run("a red circle", "-n", "11");
  assert.match(n.stderr, /--n is 11; at most 10 images/);
});

test("the engine's submission is the one check: a refusal is at once, queues nothing, and speaks the caller's names and limits", { timeout: 120_000 }, async () => {
  const engine = await DiffusionEngine.create({ executorClass: "uniproc", intraOpNumThreads: 1 });
  try {
    const r = new OmniDiffusionRequest({ prompt: "a red circle on a blue background", numInferenceSteps: 20, seed: 1 });
    // The caller's own, tighter limit (a server's), named as the caller spells the field (a worker call's path).
    assert.throws(
      () => engine.submit(r, { limits: { maxSteps: 10 }, fieldName: prefixedFields("requests.3.") }),
      (e: unknown) => e instanceof LimitExceededError && e.field === "requests.3.num_inference_steps" && /requests\.3\.num_inference_steps is 20; at most 10 steps/.test(e.message),
    );
    assert.deepEqual([engine.stats.queued, engine.stats.inFlight], [0, 0], "nothing was queued");
    // A rule of the model (its size multiple), through generate: a rejection naming the field the same way.
    await assert.rejects(
      engine.generate(new OmniDiffusionRequest({ prompt: "a red circle", width: 36, height: 32 }), { fieldName: snakeCaseFields }),
      (e: unknown) => e instanceof ValidationError && e.field === "width" && /multiples of 8/.test(e.message),
    );
    const out = await engine.submit(new OmniDiffusionRequest({ ...r, requestId: undefined, numInferenceSteps: 2 }), { limits: { maxSteps: 10 } });
    assert.equal(out.error, null);
    assert.equal(out.images.length, 1);
  } finally {
    await engine.close();
  }
});

test("a worker server refuses a call beyond its limits whole, streamed or not: none of its requests runs", { timeout: 120_000 }, async () => {
  const server = await startTestWorker({ httpPort: 0 });
  try {
    const good = { request_id: "limits-good", prompt: "a red circle on a blue background", width: 32, height: 32, num_inference_steps: 2, seed: 1 };
    const post = (requests: unknown[], accept = "application/json") =>
      fetch(`${server.httpUrl}/v1/diffusion/generate`, { method: "POST", headers: { "content-type": "application/json", accept }, body: JSON.stringify({ requests }) });
    for (const accept of ["application/json", "text/event-stream"]) {
      const refused = await post([good, { ...good, request_id: "limits-huge", num_inference_steps: 100_000 }], accept);
      assert.equal(refused.status, 400, accept);
      const body = (await refused.json()) as { error: { code: string; message: string } };
      assert.match(body.error.message, /requests\.1\.num_inference_steps is 100000/);
    }
    // Had the good request run (or were it still running), another request under its id would be a 409.
    const again = await post([{ ...good, seed: 2 }]);
    assert.equal(again.status, 200);
    const [out] = ((await again.json()) as { outputs: { errors: Record<string, unknown>; output: { seed: number }[] }[] }).outputs;
    assert.deepEqual(out!.errors, {});
    assert.equal(out!.output[0]!.seed, 2);
  } finally {
    await server.close();
  }
});
