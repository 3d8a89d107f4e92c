/**
 * What the SDXL fixtures declare, read back through the loader, and what it refuses: both tokenizers, the
 * penultimate hidden state found by name (and an export without it), text_embeds, the fp16 VAE's force_upcast,
 * the SDXL-only request fields on other models, the defaults and native sizes of base / Turbo / refiner / ensemble.
 */
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, rmSync, writeFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { OmniDiffusionRequest } from "../../src/core/request.js";
import { ModelLoadError, ValidationError } from "../../src/errors/omni-error.js";
import { loadPipeline } from "../../src/pipelines/load.js";
import { SdxlTextEncoders } from "../../src/pipelines/sdxl/sdxl-text-encoders.js";
import { handoffStep } from "../../src/pipelines/sdxl/sdxl-ensemble.js";
import type { SteppablePipeline } from "../../src/pipelines/types.js";
import { assertPixelsClose, fixtureDir, subsample } from "../models/fixtures.js";
import { sdxlDir, sdxlExpected } from "./fixtures.js";

const tmp = mkdtempSync(join(tmpdir(), "omni-sdxl-"));
after(() => rmSync(tmp, { recursive: true, force: true }));
let copies = 0;
/** A copy of a fixture folder, changed by `edit`. */
function variant(layout: Parameters<typeof sdxlDir>[0], edit: (dir: string) => void): string {
  const dir = join(tmp, `${layout}-${copies++}`);
  cpSync(sdxlDir(layout), dir, { recursive: true });
  edit(dir);
  return dir;
}
const editJson = (file: string, change: (j: Record<string, unknown>) => void) => {
  const j = JSON.parse(readFileSync(file, "utf8"));
  change(j);
  writeFileSync(file, JSON.stringify(j));
};
const load = async (dir: string) => (await loadPipeline(dir, { intraOpNumThreads: 1 })) as SteppablePipeline;

describe("SDXL layouts", () => {
  it("tokenizer pads with the end token and tokenizer_2 with '!', as the reference tokenizers", () => {
    const enc = new SdxlTextEncoders(sdxlDir("sdxl"), {});
    for (const [prompt, ids] of Object.entries(sdxlExpected.layouts.sdxl.tokens)) assert.deepEqual(enc.tokenize(prompt, 0), ids, prompt);
    for (const [prompt, ids] of Object.entries(sdxlExpected.layouts.sdxl.tokens2)) assert.deepEqual(enc.tokenize(prompt, 1), ids, prompt);
    assert.notDeepEqual(enc.tokenize("a photo of a cat", 0), enc.tokenize("a photo of a cat", 1));
  });

  it("a prompt pair encoded lately is served from the cache: the released encoders are not loaded again", async () => {
    const enc = new SdxlTextEncoders(sdxlDir("sdxl"), { intraOpNumThreads: 1 });
    await Promise.all(enc.models.map((m) => m.load()));
    enc.checkOutputs();
    const first = await enc.encode([["a cat", "a cat"], ["", ""]]);
    await Promise.all(enc.models.map((m) => m.release()));
    const again = await enc.encode([["", ""], ["a cat", "a cat"]]);
    assert.deepEqual(enc.models.map((m) => m.loaded), [false, false]);
    const per = first.tokens * first.dim;
    assert.deepEqual(again.hidden.subarray(per), first.hidden.subarray(0, per));
    assert.deepEqual(again.pooled.subarray(0, first.pooledDim), first.pooled.subarray(first.pooledDim));
    await enc.encode([["a dog", "a dog"]]); // a new pair loads them
    assert.deepEqual(enc.models.map((m) => m.loaded), [true, true]);
    await Promise.all(enc.models.map((m) => m.release()));
  });

  it("an export without the penultimate hidden state is refused, naming the missing output", async () => {
    const dir = variant("sdxl", (d) => editJson(join(d, "text_encoder_2", "config.json"), (j) => (j.num_hidden_layers = 32)));
    await assert.rejects(load(dir), (e: unknown) => e instanceof ModelLoadError && /text_encoder_2 .* has no output hidden_states\.31, the penultimate hidden state/.test(e.message));
  });

  it("a text_encoder_2 without the projection (text_embeds) is refused by name", async () => {
    const dir = variant("sdxl", (d) => {
      cpSync(join(d, "text_encoder"), join(d, "text_encoder_2"), { recursive: true });
    });
    await assert.rejects(load(dir), (e: unknown) => e instanceof ModelLoadError && /text_encoder_2 .* has no output text_embeds/.test(e.message));
  });

  it("a float16 VAE decoder with force_upcast is refused at load; force_upcast false loads it", async () => {
    const fp16Vae = (d: string) => cpSync(join(fixtureDir("sd15-fp16"), "vae_decoder", "model.onnx"), join(d, "vae_decoder", "model.onnx"));
    await assert.rejects(load(variant("sdxl", fp16Vae)), (e: unknown) => e instanceof ModelLoadError && /vae_decoder .* is a float16 export, but its config asks for force_upcast/.test(e.message));
    const ok = await load(
      variant("sdxl", (d) => {
        fp16Vae(d);
        editJson(join(d, "vae_decoder", "config.json"), (j) => (j.force_upcast = false));
      }),
    );
    try {
      const out = await ok.generate([new OmniDiffusionRequest({ prompt: "x", width: 64, height: 64, numInferenceSteps: 1, seed: 1 })]);
      assert.deepEqual(Object.keys(out.errors), []);
    } finally {
      await ok.release();
    }
  });

  it("native sizes and defaults: base 1024² (20 steps, guidance 5), Turbo 512² (1 step, no guidance, Euler ancestral), refiner, ensemble", async () => {
    const expect = { sdxl: [1024, 20, 5, "euler"], "sdxl-turbo": [512, 1, 0, "euler_a"], "sdxl-refiner": [1024, 20, 5, "euler"], "sdxl-ensemble": [1024, 20, 5, "euler"] } as const;
    for (const [layout, [size, steps, g, sched]] of Object.entries(expect)) {
      const p = await load(sdxlDir(layout as keyof typeof expect));
      try {
        assert.deepEqual([p.info.width, p.info.height], [size, size], layout);
        assert.deepEqual(p.info.defaults, { numInferenceSteps: steps, guidanceScale: g, scheduler: sched }, layout);
      } finally {
        await p.release();
      }
    }
  });

  it("SDXL-only fields are refused by name on models that would not read them", async () => {
    const refuses = async (dir: string, init: Partial<ConstructorParameters<typeof OmniDiffusionRequest>[0]>, field: string, re: RegExp) => {
      const p = await load(dir);
      try {
        assert.throws(
          () => p.validate(new OmniDiffusionRequest({ prompt: "x", width: 64, height: 64, ...init })),
          (e: unknown) => e instanceof ValidationError && e.field === field && re.test(e.message),
          `${dir} ${field}`,
        );
      } finally {
        await p.release();
      }
    };
    await refuses(fixtureDir("sd15"), { prompt2: "y" }, "prompt_2", /applies only to SDXL models/);
    await refuses(fixtureDir("sd15"), { originalSize: [512, 512] }, "original_size", /applies only to SDXL models/);
    await refuses(sdxlDir("sdxl"), { aestheticScore: 7 }, "aesthetic_score", /only to the SDXL refiner/);
    await refuses(sdxlDir("sdxl"), { denoisingEnd: 0.8 }, "denoising_end", /base \+ refiner ensemble/);
    await refuses(sdxlDir("sdxl-refiner"), { prompt2: "y" }, "prompt_2", /only to SDXL base models/);
  });

  it("the request's SDXL fields travel in the snake_case dict and are checked there", () => {
    const r = OmniDiffusionRequest.fromDict({ prompt: "p", prompt_2: "q", negative_prompt_2: "n", original_size: [512, 768], crops_coords_top_left: [0, 16], target_size: [1024, 1024], aesthetic_score: 7, negative_aesthetic_score: 2, denoising_end: 0.7 });
    assert.deepEqual([r.prompt2, r.negativePrompt2, r.originalSize, r.cropsCoordsTopLeft, r.targetSize, r.aestheticScore, r.negativeAestheticScore, r.denoisingEnd], ["q", "n", [512, 768], [0, 16], [1024, 1024], 7, 2, 0.7]);
    const back = OmniDiffusionRequest.fromDict(r.toDict());
    assert.deepEqual(back.toDict(), r.toDict());
    assert.throws(() => OmniDiffusionRequest.fromDict({ prompt: "p", original_size: [512] }), (e: unknown) => e instanceof ValidationError && e.field === "original_size");
    assert.throws(() => OmniDiffusionRequest.fromDict({ prompt: "p", denoising_end: 0 }), (e: unknown) => e instanceof ValidationError && e.field === "denoising_end");
  });

  it("the ensemble's memory counts both experts' weights", async () => {
    const [base, refiner, ens] = await Promise.all((["sdxl", "sdxl-refiner", "sdxl-ensemble"] as const).map((l) => load(sdxlDir(l))));
    try {
      assert.equal(ens.describe!().memory!.weightBytes, base.describe!().memory!.weightBytes + refiner.describe!().memory!.weightBytes);
      assert.ok(refiner.describe!().memory!.weightBytes > 0);
    } finally {
      await Promise.all([base, refiner, ens].map((p) => p.release()));
    }
  });

  it("the handoff step follows diffusers' cutoff int(round(T - end × T))", () => {
    const leading5 = [801, 601, 401, 201, 1];
    assert.equal(handoffStep(leading5, 1000, 0.5), 2); // cutoff 500
    assert.equal(handoffStep(leading5, 1000, 0.8), 4); // cutoff 200: 201 is the base's
    assert.equal(handoffStep(leading5, 1000, 1), 5);
  });

  it("the refiner inpaints: the pixels its mask keeps are the init image's, byte for byte", async () => {
    const p = await load(sdxlDir("sdxl-refiner"));
    try {
      const data = new Uint8Array(64 * 64 * 3).map((_, i) => (i * 5) % 256);
      const mask = new Uint8Array(64 * 64).map((_, i) => (i % 64 < 32 ? 0 : 255)); // keep the left half
      const req = new OmniDiffusionRequest({ prompt: "a door", image: { width: 64, height: 64, data }, mask: { width: 64, height: 64, data: mask }, numInferenceSteps: 3, seed: 4 });
      const out = await p.generate([req]);
      assert.deepEqual(Object.keys(out.errors), [], Object.values(out.errors)[0]?.message);
      const img = out.imagesFor(req.requestId)[0]!;
      let keptSame = 0;
      let repaintedDiffer = 0;
      for (let px = 0; px < 64 * 64; px++) {
        const same = [0, 1, 2].every((c) => img.data[px * 3 + c] === data[px * 3 + c]);
        if (mask[px] === 0) keptSame += same ? 1 : 0;
        else repaintedDiffer += same ? 0 : 1;
      }
      assert.equal(keptSame, 32 * 64);
      assert.ok(repaintedDiffer > 32 * 64 * 0.9, `repainted pixels changed: ${repaintedDiffer}`);
    } finally {
      await p.release();
    }
  });

  it("the refiner edits an image through its vae_encoder (img2img)", async () => {
    const p = await load(sdxlDir("sdxl-refiner"));
    try {
      const data = new Uint8Array(64 * 64 * 3).map((_, i) => (i * 7) % 256);
      const req = new OmniDiffusionRequest({ prompt: "sharper", image: { width: 64, height: 64, data }, strength: 0.3, numInferenceSteps: 10, seed: 3, returnTrajectoryTimesteps: true });
      const out = await p.generate([req]);
      assert.deepEqual(Object.keys(out.errors), [], Object.values(out.errors)[0]?.message);
      assert.equal(out.trajectoryTimesteps![0]!.timesteps.length, 3); // floor(10 × 0.3) steps
      assert.deepEqual([out.imagesFor(req.requestId)[0]!.width, out.imagesFor(req.requestId)[0]!.height], [64, 64]);
    } finally {
      await p.release();
    }
  });
});

describe("SDXL fields on the gRPC wire", () => {
  it("travel in the proto message and its dict form, and come back as they were sent", async () => {
    const { requestToProtoMessage, requestFromProtoMessage } = await import("../../src/protocol/request-codec.js");
    const { requestToProto, requestFromProto } = await import("../../src/protocol/proto-codec.js");
    const xl = { prompt2: "b", negativePrompt2: "c", originalSize: [512, 768] as [number, number], cropsCoordsTopLeft: [8, 16] as [number, number], targetSize: [1024, 1024] as [number, number], aestheticScore: 6.5, negativeAestheticScore: 2, denoisingEnd: 0.7 };
    const r = new OmniDiffusionRequest({ prompt: "x", requestId: "p", ...xl });
    const back = requestFromProtoMessage(requestToProtoMessage(r));
    for (const [k, v] of Object.entries(xl)) assert.deepEqual(back[k as keyof typeof xl], v, k);
    const viaDict = OmniDiffusionRequest.fromDict(requestFromProto(requestToProto(r.toDict() as Parameters<typeof requestToProto>[0])));
    for (const [k, v] of Object.entries(xl)) assert.deepEqual(viaDict[k as keyof typeof xl], v, `${k} (dict)`);
    // Unset pairs stay unset (an empty repeated field), and a pair of the wrong length is refused by name.
    assert.equal(requestFromProtoMessage(requestToProtoMessage(new OmniDiffusionRequest({ prompt: "x" }))).targetSize, null);
    assert.throws(() => requestFromProtoMessage({ ...requestToProtoMessage(r), target_size: [1] }), (e: unknown) => e instanceof ValidationError && e.field === "target_size");
  });

  it("an SDXL request through the gRPC executor gives the reference image", async () => {
    const { startTestWorker } = await import("../helpers/worker-servers.js");
    const { DiffusionEngine } = await import("../../src/engine/engine.js");
    const worker = await startTestWorker({ grpcPort: 0, engine: { model: sdxlDir("sdxl") } });
    const engine = await DiffusionEngine.create({ executorClass: "grpc", executorOptions: { endpoints: [worker.grpcAddress!] }, allowNonNativeSizes: true });
    try {
      const c = sdxlExpected.layouts.sdxl.cases[1]!; // prompt_2, a negative prompt, size conditioning
      const out = await engine.generate(new OmniDiffusionRequest({ ...c.request, requestId: "grpc-xl" }));
      out.images.forEach((img, k) => assertPixelsClose(subsample(img, c.image.stride), c.image.pixels[k]!, 2, `sdxl over gRPC image ${k}`, 3));
    } finally {
      await engine.close();
      await worker.close();
    }
  });
});
