/**
 * One measurement of a worker's memory, in a process of its own (peak RSS is per process and never goes
 * down): loads a model with the given session memory settings, generates one image, and prints one JSON line
 * with the weight bytes it loaded, RSS after load, peak RSS, the load time, each UNet call's time and the decode time.
 *
 *   npx tsx bench/lib/memory-probe.ts '{"model":"DIR","width":512,"height":512,"batch":1,"steps":1,"guidance":1}'
 *
 * bench/realscale.ts runs it once per setting; it is not meant to be run by hand, but can be.
 */
import { performance } from "node:perf_hooks";
import { estimateWorkerBytes } from "../../src/core/memory-estimate.js";
import { OmniDiffusionRequest } from "../../src/core/request.js";
import { loadPipeline } from "../../src/pipelines/load.js";
import type { MemoryTuning } from "../../src/pipelines/onnx-model.js";
import type { SteppablePipeline } from "../../src/pipelines/types.js";

interface ProbeArgs {
  model: string;
  width: number;
  height: number;
  batch: number;
  steps: number;
  guidance: number;
  threads?: number;
  memory?: Partial<MemoryTuning>;
  vae?: "full" | "tiny";
}

const args = JSON.parse(process.argv[2] ?? "{}") as ProbeArgs;
const peak = () => process.resourceUsage().maxRSS * 1024;
const rssBefore = process.memoryUsage.rss();
const t0 = performance.now();
const pipeline = (await loadPipeline(args.model, { intraOpNumThreads: args.threads, memory: args.memory })) as SteppablePipeline;
const loadMs = performance.now() - t0;
const rssAfterLoad = process.memoryUsage.rss();
const peakAfterLoad = peak();
const t1 = performance.now();
const request = new OmniDiffusionRequest({
  prompt: "a red circle on a blue background",
  width: args.width,
  height: args.height,
  numInferenceSteps: args.steps,
  guidanceScale: args.guidance,
  numOutputsPerPrompt: args.batch,
  seed: 1,
  vae: args.vae ?? null,
});
// The step-level interface, so each UNet call is timed apart (the first one pays onnxruntime's first-run costs).
const states = await pipeline.prepare([request]);
const unetMs: number[] = [];
for (let i = 0; i < args.steps; i++) for (const call of await pipeline.step(states)) unetMs.push(call.unetMs ?? call.ms);
const peakAfterSteps = peak();
const t2 = performance.now();
const images = (await pipeline.decode(states))[0]!;
const decodeMs = performance.now() - t2;
const generateMs = performance.now() - t1;
if (states[0]!.error) throw states[0]!.error;
if (images.length !== args.batch) throw new Error(`decoded ${images.length} images, expected ${args.batch}`);
console.log(
  JSON.stringify({
    weightBytes: pipeline.describe!().memory!.weightBytes,
    estimate: estimateWorkerBytes(
      { ...pipeline.describe!(), memory: pipeline.describe!().memory! },
      args.width,
      args.height,
      args.batch * (args.guidance > 1 ? 2 : 1),
      args.batch,
    ),
    rssBefore,
    rssAfterLoad,
    peakAfterLoad,
    peakAfterSteps,
    peakRss: peak(),
    rssEnd: process.memoryUsage.rss(),
    loadMs,
    generateMs,
    unetMs,
    decodeMs,
  }),
);
await pipeline.release();
