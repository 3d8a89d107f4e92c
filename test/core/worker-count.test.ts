/**
 * The default worker count: as many as fit in memory while the cores stay shared for SD-size models (one on a
 * 2-core machine, with the line that says why), one for small models and on a GPU; a config that names
 * `numGpus` keeps it.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { parseConfig } from "../../src/core/config.js";
import { defaultWorkerCount } from "../../src/core/worker-count.js";

const GiB = 1024 ** 3;

describe("defaultWorkerCount", () => {
  it("gives an SD-size model one worker on 2 cores, and says memory would fit more", () => {
    const c = defaultWorkerCount({ weightBytes: 4 * GiB, machineBytes: 24 * GiB, cores: 2, device: "cpu" });
    assert.equal(c.workers, 1);
    assert.match(c.reason!, /^1 worker: 4\.00 GiB of weights, about 5\.45 GiB per worker .* memory fits 3 workers; .* this machine has 2/);
  });

  it("runs one per 8 cores while memory fits, and never more than memory fits", () => {
    assert.equal(defaultWorkerCount({ weightBytes: 4 * GiB, machineBytes: 64 * GiB, cores: 32, device: "cpu" }).workers, 4);
    assert.equal(defaultWorkerCount({ weightBytes: 4 * GiB, machineBytes: 12 * GiB, cores: 32, device: "cpu" }).workers, 1);
    assert.equal(defaultWorkerCount({ weightBytes: 4 * GiB, machineBytes: 2 * GiB, cores: 32, device: "cpu" }).workers, 1, "at least one: the start-up check refuses what cannot fit");
  });

  it("keeps small models and GPUs at one, with nothing to log", () => {
    assert.deepEqual(defaultWorkerCount({ weightBytes: 14 * 1024 ** 2, machineBytes: 24 * GiB, cores: 64, device: "cpu" }), { workers: 1, reason: null });
    assert.deepEqual(defaultWorkerCount({ weightBytes: 4 * GiB, machineBytes: 128 * GiB, cores: 64, device: "webgpu" }), { workers: 1, reason: null });
  });
});

describe("parseConfig's numGpus default", () => {
  it("is 1 for the shipped model, silently, and what the config says when it says", () => {
    const shipped = parseConfig({});
    assert.deepEqual([shipped.numGpus, shipped.numGpusReason], [1, null]);
    assert.deepEqual([parseConfig({ numGpus: 3 }).numGpus, parseConfig({ numGpus: 3 }).numGpusReason], [3, null]);
  });

  it("sizes an SD-size model folder from its files (sparse here: nothing is written)", () => {
    const dir = mkdtempSync(join(tmpdir(), "omni-workers-"));
    try {
      writeFileSync(join(dir, "model_index.json"), JSON.stringify({ _class_name: "OnnxStableDiffusionPipeline" }));
      for (const [component, bytes] of [["unet", 3.2 * GiB], ["text_encoder", 0.46 * GiB], ["vae_decoder", 0.18 * GiB]] as const) {
        mkdirSync(join(dir, component));
        writeFileSync(join(dir, component, "model.onnx"), "");
        truncateSync(join(dir, component, "model.onnx"), Math.round(bytes));
      }
      const cfg = parseConfig({ model: dir });
      assert.ok(cfg.numGpus >= 1);
      assert.match(cfg.numGpusReason!, /3\.84 GiB of weights/);
      assert.equal(parseConfig({ model: dir, executorClass: "http" }).numGpusReason, null, "remote executors' ranks are not sized by local memory");
      const again = parseConfig(cfg);
      assert.deepEqual([again.numGpus, again.numGpusReason], [cfg.numGpus, cfg.numGpusReason], "a parsed config parses again to itself");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
