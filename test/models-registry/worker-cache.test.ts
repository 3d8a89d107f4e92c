/**
 * A worker serving several models (issue 24): each request runs on its own model's pipeline, loaded on first use
 * into an LRU bounded by count and memory; loads never block a loaded model, a request for a loading model waits
 * for it, and eviction waits for the steps in flight. Real ONNX models: the shipped tiny-shapes and the sd15 fixture.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { after, describe, it } from "node:test";
import { OmniDiffusionRequest } from "../../src/core/request.js";
import type { PipelineLoadOptions } from "../../src/core/pipeline-load-options.js";
import { NotFoundError, ResourceExhaustedError, ValidationError } from "../../src/errors/omni-error.js";
import { loadPipeline } from "../../src/pipelines/load.js";
import { isSteppable, type DiffusionPipeline } from "../../src/pipelines/types.js";
import { DiffusionWorker } from "../../src/workers/diffusion-worker.js";
import { MODEL_DIR } from "../helpers/model.js";
import { requestFromDict, requestFromProtoMessage, requestToProtoMessage } from "../../src/protocol/request-codec.js";
import { requestFromProto, requestToProto } from "../../src/protocol/proto-codec.js";

const SD15 = fileURLToPath(new URL("../fixtures/models/sd15", import.meta.url));
const MODELS = { "tiny-shapes": MODEL_DIR, sd15: SD15 };
const LOAD: PipelineLoadOptions = { intraOpNumThreads: 1 };

const tinyReq = (id: string, seed = 1) => new OmniDiffusionRequest({ requestId: id, prompt: "a red circle on a blue background", seed, numInferenceSteps: 3 });
const sdReq = (id: string, seed = 2) => new OmniDiffusionRequest({ requestId: id, prompt: "a photo of a cat", seed, numInferenceSteps: 3, model: "sd15" });

/** A latch: a promise and the function that opens it. */
function latch(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => (open = r));
  return { promise, open };
}

/** Waits (turn by turn of the event loop, no clock) until `cond` holds. */
async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setImmediate(r));
}

async function worker(opts: { maxLoadedModels?: number; maxModelMemory?: number; loader?: (dir: string, o: PipelineLoadOptions) => Promise<DiffusionPipeline>; resolveLora?: (n: string) => string } = {}): Promise<DiffusionWorker> {
  return DiffusionWorker.create({ rank: 0, modelDir: MODEL_DIR, load: LOAD, batching: "continuous", models: MODELS, defaultModel: "tiny-shapes", maxLoadedModels: opts.maxLoadedModels, maxModelMemory: opts.maxModelMemory }, { loader: opts.loader, resolveLora: opts.resolveLora });
}

const bytesOf = async (w: DiffusionWorker, r: OmniDiffusionRequest) => {
  const out = await w.generateOutput([r]);
  assert.deepEqual(out.errors, {});
  return Buffer.from(out.output[0]!.data);
};

describe("a worker with several models", { timeout: 300_000 }, () => {
  const workers: DiffusionWorker[] = [];
  after(() => Promise.all(workers.map((w) => w.close())));
  const make = async (opts: Parameters<typeof worker>[0] = {}) => {
    const w = await worker(opts);
    workers.push(w);
    return w;
  };

  it("runs each request on its own model; mixed calls give the images each request gives alone", async () => {
    const w = await make();
    const tinyAlone = await bytesOf(w, tinyReq("t0"));
    const sdAlone = await bytesOf(w, sdReq("s0"));
    assert.notDeepEqual(tinyAlone.length, 0);
    // sd15's fixture decodes at its own native size: another model really ran.
    const both = await w.generateOutput([tinyReq("t1"), sdReq("s1")]);
    assert.deepEqual(both.errors, {});
    const byId = new Map(both.output.map((o) => [o.requestId, o]));
    assert.deepEqual(Buffer.from(byId.get("t1")!.data), tinyAlone);
    assert.deepEqual(Buffer.from(byId.get("s1")!.data), sdAlone);
    assert.notEqual(byId.get("t1")!.width * byId.get("t1")!.height, 0);
    const m = w.getStats().models!;
    assert.equal(m.loads, 2);
    assert.deepEqual(m.loaded.map((e) => e.key).sort(), ["sd15", "tiny-shapes"]);
  });

  it("refuses an unknown model by name, listing the known ones; the rest of the call still runs", async () => {
    const w = await make();
    const bad = new OmniDiffusionRequest({ requestId: "x", prompt: "a red circle on a blue background", model: "nope" });
    const out = await w.generateOutput([bad, tinyReq("ok")]);
    const err = out.errors.x;
    assert.ok(err instanceof NotFoundError, String(err));
    assert.match(err.message, /no model named "nope" \(known: tiny-shapes, sd15\)/);
    assert.equal(out.output.length, 1);
  });

  it("a tight count evicts the least recently used model and reloads it transparently", async () => {
    const w = await make({ maxLoadedModels: 1 });
    const t = await bytesOf(w, tinyReq("a"));
    const s = await bytesOf(w, sdReq("b"));
    assert.deepEqual(await bytesOf(w, tinyReq("c")), t);
    assert.deepEqual(await bytesOf(w, sdReq("d")), s);
    const m = w.getStats().models!;
    // tiny at start, sd15, tiny again, sd15 again: every switch evicted the other.
    assert.equal(m.loads, 4);
    assert.equal(m.evictions, 3);
    assert.equal(m.loaded.length, 1);
    assert.equal(w.getStats().requestsDone, 4);
  });

  it("a memory budget that fits one model at a time evicts by bytes", async () => {
    const probe = await make();
    await bytesOf(probe, sdReq("p"));
    const sizes = Object.fromEntries(probe.getStats().models!.loaded.map((e) => [e.model, e.bytes]));
    const budget = Math.max(sizes["tiny-shapes"]!, sizes.sd15!) + 1;
    assert.ok(budget < sizes["tiny-shapes"]! + sizes.sd15!);
    const w = await make({ maxModelMemory: budget });
    await bytesOf(w, sdReq("a"));
    await bytesOf(w, tinyReq("b"));
    const m = w.getStats().models!;
    assert.equal(m.loads, 3);
    assert.equal(m.evictions, 2);
    assert.ok(m.usedBytes <= budget);
  });

  it("a model bigger than the whole budget is refused with the numbers", async () => {
    const w = await make({ maxModelMemory: 1024 });
    const out = await w.generateOutput([sdReq("big")]);
    const err = out.errors.big;
    assert.ok(err instanceof ResourceExhaustedError, String(err));
    assert.equal(err.statusCode, 507);
    assert.match(err.message, /needs about [\d.]+ MiB resident but the model memory budget is 0\.0 MiB/);
    assert.equal(err.data.budgetBytes, 1024);
  });

  it("a request for a loading model waits for it, and a load never blocks a loaded model", async () => {
    const gate = latch();
    let sdLoads = 0;
    const w = await make({
      loader: async (dir, o) => {
        if (dir === SD15) {
          sdLoads++;
          await gate.promise;
        }
        return loadPipeline(dir, o);
      },
    });
    let sdDone = false;
    const sd = w.generateOutput([sdReq("s")]).then((o) => ((sdDone = true), o));
    const sd2 = w.generateOutput([sdReq("s2", 5)]);
    await until(() => sdLoads === 1);
    const tiny = await w.generateOutput([tinyReq("t")]);
    assert.equal(tiny.output.length, 1);
    assert.equal(sdDone, false, "the sd15 request waits for its model's load");
    gate.open();
    const [a, b] = await Promise.all([sd, sd2]);
    assert.deepEqual([a.errors, b.errors], [{}, {}]);
    assert.equal(sdLoads, 1, "two requests for one loading model share its load");
  });

  it("a request waiting for a load leaves when its call is aborted; the load goes on", async () => {
    const gate = latch();
    const w = await make({ loader: async (dir, o) => (dir === SD15 ? gate.promise.then(() => loadPipeline(dir, o)) : loadPipeline(dir, o)) });
    const ac = new AbortController();
    const pending = w.generateOutput([sdReq("late")], { signal: ac.signal });
    await until(() => w.getStats().models!.loaded.some((e) => e.model === "sd15"));
    ac.abort();
    const out = await pending;
    assert.equal(out.errors.late?.code, "OMNI_ERR_ABORTED");
    gate.open();
    assert.deepEqual((await w.generateOutput([sdReq("after")])).errors, {});
  });

  it("eviction waits for the evicted model's steps in flight", async () => {
    const w = await make({ maxLoadedModels: 1 });
    const p = w.pipeline;
    assert.ok(isSteppable(p));
    const held = latch();
    const go = latch();
    const step = p.step.bind(p);
    let steps = 0;
    p.step = async (states) => {
      if (++steps === 2) {
        held.open();
        await go.promise;
      }
      return step(states);
    };
    const tinyAlone = await (async () => {
      const other = await make();
      return bytesOf(other, tinyReq("ref", 9));
    })();
    const tiny = w.generateOutput([tinyReq("t", 9)]);
    await held.promise;
    const sd = w.generateOutput([sdReq("s")]);
    // The sd15 load has taken tiny-shapes out of the cache and waits for its step to finish.
    await until(() => !w.getStats().models!.loaded.some((e) => e.model === "tiny-shapes"));
    assert.equal(w.pipeline.info.asleep, false, "tiny-shapes' sessions are not released under its running step");
    go.open();
    const [t, s] = await Promise.all([tiny, sd]);
    assert.deepEqual([t.errors, s.errors], [{}, {}]);
    assert.deepEqual(Buffer.from(t.output[0]!.data), tinyAlone);
    assert.equal(w.getStats().models!.evictions, 1);
    assert.equal(w.pipeline.info.asleep, true);
  });

  it("two weights keys take turns step by step: a short request of another model never waits for a long one", async () => {
    const log: string[] = [];
    let loads = 0;
    const wrap = (p: DiffusionPipeline, tag: string) => {
      assert.ok(isSteppable(p));
      const step = p.step.bind(p);
      p.step = async (states) => {
        log.push(`${tag}:${states.map((s) => s.request.requestId).join(",")}`);
        return step(states);
      };
      return p;
    };
    const w = await DiffusionWorker.create(
      { rank: 0, modelDir: MODEL_DIR, load: LOAD, batching: "continuous", models: { "tiny-shapes": MODEL_DIR, twin: MODEL_DIR }, defaultModel: "tiny-shapes" },
      { loader: async (dir, o) => wrap(await loadPipeline(dir, o), loads++ === 0 ? "A" : "B") },
    );
    workers.push(w);
    await w.loadModel("twin");
    log.length = 0;
    const long = w.generateOutput([new OmniDiffusionRequest({ requestId: "long", prompt: "a red circle on a blue background", seed: 1, numInferenceSteps: 12 })]);
    await until(() => log.length >= 1);
    const short = await w.generateOutput([new OmniDiffusionRequest({ requestId: "short", prompt: "a blue square on a red background", seed: 2, numInferenceSteps: 3, model: "twin" })]);
    assert.deepEqual(short.errors, {});
    const longStepsBeforeShortDone = log.filter((l) => l.endsWith("long")).length;
    assert.ok(longStepsBeforeShortDone < 12, `the short request finished after ${longStepsBeforeShortDone} of the long one's 12 steps`);
    // Each loop's steps hold only its own key's requests (never batched together).
    assert.ok(log.every((l) => l === "A:long" || l === "B:short"), log.join(" "));
    // First come, first served on the worker's lane: the two loops alternate while both have work.
    assert.deepEqual(log.slice(0, 6), ["A:long", "B:short", "A:long", "B:short", "A:long", "B:short"]);
    assert.deepEqual((await long).errors, {});
  });

  it("LoRAs form their own weights key: names resolve to files and reach the loader; unknown ones are NotFoundError", async () => {
    const seen: PipelineLoadOptions["loras"][] = [];
    const w = await make({
      loader: async (dir, o) => {
        if (o.loras) seen.push(o.loras);
        // The fusing is the LoRA helper's: this loader runs the model as it is, to test the key path.
        return loadPipeline(dir, { ...o, loras: undefined });
      },
      resolveLora: (name) => {
        if (name !== "style") throw new NotFoundError(`no LoRA named "${name}"`, { data: { field: "loras" } });
        return `/loras/${name}.safetensors`;
      },
    });
    const withLora = (id: string, loras: { name: string; scale: number }[]) => new OmniDiffusionRequest({ requestId: id, prompt: "a red circle on a blue background", seed: 1, numInferenceSteps: 2, loras });
    const out = await w.generateOutput([withLora("a", [{ name: "style", scale: 0.5 }]), withLora("b", [{ name: "style", scale: 0.5 }]), withLora("c", [{ name: "nope", scale: 1 }])]);
    assert.equal(out.output.length, 2);
    assert.match(out.errors.c!.message, /no LoRA named "nope"/);
    assert.deepEqual(seen, [[{ name: "style", scale: 0.5, path: "/loras/style.safetensors" }]]);
    assert.deepEqual(w.getStats().models!.loaded.map((e) => e.key).sort(), ["tiny-shapes", "tiny-shapes+style:0.5"]);
    // Without a resolver (no --loras-dir) every LoRA is unknown, said plainly.
    const plain = await make();
    const refused = await plain.generateOutput([withLora("d", [{ name: "style", scale: 1 }])]);
    assert.ok(refused.errors.d instanceof NotFoundError);
    assert.match(refused.errors.d.message, /no LoRA named "style" \(start with --loras-dir\)/);
  });

  it("request validation: LoRA scales must be finite and sane, names non-empty, each once", () => {
    const bad = (loras: unknown) => () => new OmniDiffusionRequest({ prompt: "x", loras: loras as never });
    assert.throws(bad([{ name: "", scale: 1 }]), (e: unknown) => e instanceof ValidationError && /loras/.test(e.message));
    assert.throws(bad([{ name: "a", scale: 11 }]), ValidationError);
    assert.throws(bad([{ name: "a", scale: Number.NaN }]), ValidationError);
    assert.throws(bad([{ name: "a", scale: 1 }, { name: "a", scale: 2 }]), /each LoRA name may appear once/);
    assert.throws(() => new OmniDiffusionRequest({ prompt: "x", model: "" }), /model/);
    const r = OmniDiffusionRequest.fromDict({ prompt: "x", model: "sd15", loras: [{ name: "a", scale: 0.5 }] });
    assert.equal(r.model, "sd15");
    assert.deepEqual(r.toDict().loras, [{ name: "a", scale: 0.5 }]);
    // Every wire form carries both fields: the dict (HTTP, SageMaker, queue jobs) and the proto message (gRPC).
    const back = requestFromProtoMessage(requestToProtoMessage(r));
    assert.equal(back.model, "sd15");
    assert.deepEqual(back.loras, [{ name: "a", scale: 0.5 }]);
    assert.deepEqual(requestFromProto(requestToProto(r.toDict())), { ...requestFromProto(requestToProto(r.toDict())), model: "sd15", loras: [{ name: "a", scale: 0.5 }] });
    assert.equal(requestFromDict(r.toDict()).model, "sd15");
    assert.equal(OmniDiffusionRequest.fromTransfer(r.toTransfer()).model, "sd15");
  });
});
