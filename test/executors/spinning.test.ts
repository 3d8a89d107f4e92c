/**
 * `intraOpSpinning` (`--spin-threads`): whether onnxruntime's idle intra-op threads busy-wait. Its default
 * follows the batching policy, it travels from the config (or the CLI flag) to every worker's sessions,
 * and it never changes an image: only how threads wait.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConfigError, DiffusionEngine, parseConfig } from "../../src/index.js";
import { engineConfigFromFlags } from "../../src/cli/options.js";
import { workerInitOf } from "../../src/executors/shared/worker-init.js";

describe("intraOpSpinning", () => {
  it("defaults to off under continuous batching (the default) and on under request and none", () => {
    assert.equal(parseConfig({}).intraOpSpinning, false);
    assert.equal(parseConfig({ batching: "continuous" }).intraOpSpinning, false);
    assert.equal(parseConfig({ batching: "request" }).intraOpSpinning, true);
    assert.equal(parseConfig({ batching: "none" }).intraOpSpinning, true);
  });

  it("an explicit value wins over the policy's default", () => {
    assert.equal(parseConfig({ batching: "continuous", intraOpSpinning: true }).intraOpSpinning, true);
    assert.equal(parseConfig({ batching: "none", intraOpSpinning: false }).intraOpSpinning, false);
  });

  it("a value that is not a boolean is a ConfigError naming the field", () => {
    assert.throws(
      () => parseConfig({ intraOpSpinning: "no" as unknown as boolean }),
      (err: unknown) => err instanceof ConfigError && err.data.field === "intraOpSpinning" && /intraOpSpinning/.test(err.message),
    );
  });

  it("reaches the worker's session options, and --spin-threads sets it", () => {
    assert.equal(workerInitOf(parseConfig({ batching: "none", intraOpSpinning: false }), 0).load.intraOpSpinning, false);
    assert.equal(workerInitOf(parseConfig({ batching: "continuous" }), 1).load.intraOpSpinning, false);
    assert.deepEqual(engineConfigFromFlags({ spinThreads: "on" }), { intraOpSpinning: true });
    assert.deepEqual(engineConfigFromFlags({ spinThreads: "off" }), { intraOpSpinning: false });
    assert.deepEqual(engineConfigFromFlags({}), {});
  });

  it("onnxruntime accepts both settings and they give the same image, with 2 threads", async () => {
    const request = { prompt: "a red circle on a blue background", numInferenceSteps: 4, guidanceScale: 4, seed: 7 };
    const images: Uint8Array[] = [];
    for (const intraOpSpinning of [true, false]) {
      const engine = await DiffusionEngine.create({ executorClass: "uniproc", intraOpNumThreads: 2, intraOpSpinning });
      try {
        const out = await engine.generate(request);
        assert.equal(out.error, null);
        images.push(out.images[0]!.data);
      } finally {
        await engine.close();
      }
    }
    assert.ok(images[0]!.length > 0);
    assert.deepEqual(images[1], images[0]);
  });
});
