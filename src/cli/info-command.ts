import type { Command } from "commander";
import { parseConfig } from "../core/config.js";
import { availableParallelism } from "node:os";
import { describeWorkerBytes, estimateWorkerBytes, type WorkerBytesEstimate } from "../core/memory-estimate.js";
import type { ModelLimits } from "../core/model-limits.js";
import { OmniDiffusionRequest } from "../core/request.js";
import { builtinExecutorNames } from "../executors/resolve-executor.js";
import { loadPipeline } from "../pipelines/load.js";
import { formatLayout, type ModelLayout } from "../pipelines/model-layout.js";
import { registeredPipelines } from "../pipelines/registry.js";
import { describeWebGpu } from "../pipelines/webgpu-info.js";
import type { DiffusionPipeline } from "../pipelines/types.js";
import { deviceOption, type EngineFlags } from "./options.js";

/** Pipelines that can say how their export is laid out (the built-in ONNX pipeline; registered ones may not). */
interface DescribedPipeline extends DiffusionPipeline {
  layout(): ModelLayout;
  describe(): ModelLimits;
}

const isDescribed = (p: DiffusionPipeline): p is DescribedPipeline =>
  typeof (p as Partial<DescribedPipeline>).layout === "function" && typeof (p as Partial<DescribedPipeline>).describe === "function";

/**
 * `omni-diffusion info [--model DIR] [--device D] [--json]`: loads the model once and prints its layout (latent or
 * pixel space, every component's inputs and outputs with dtypes, timestep form), native size, the samplers that
 * fit its prediction type, whether classifier-free guidance applies, and the executors and pipelines available.
 */
export function addInfoCommand(program: Command): void {
  program
    .command("info")
    .description("print the model's layout, dtypes, native size, fitting schedulers and guidance, and the available executors")
    .option("--model <model>", "model folder, built-in name (tiny-shapes) or pulled Hugging Face id (owner/name)")
    .addOption(deviceOption())
    .option("--measure", "also generate one 1-step image at the native size and print the peak RSS measured next to the estimate")
    .option("--json", "print JSON")
    .action(async (flags: Pick<EngineFlags, "device"> & { model?: string; json?: boolean; measure?: boolean }) => {
      const config = parseConfig({ ...(flags.model ? { model: flags.model } : {}), ...(flags.device ? { device: flags.device } : {}) });
      // Before the model loads: a machine without an adapter gets the error with the Vulkan drivers it has.
      const webgpu = config.device === "webgpu" ? await describeWebGpu() : null;
      // Measuring runs a real image: with every core, as a worker would.
      const pipeline = await loadPipeline(config.model, { intraOpNumThreads: flags.measure ? availableParallelism() : 1, device: config.device });
      const described = isDescribed(pipeline) ? { layout: pipeline.layout(), limits: pipeline.describe() } : null;
      const memory = described?.limits.memory ? memoryLines(described.limits) : null;
      const measured = flags.measure ? await measurePeak(pipeline, described?.limits ?? null) : null;
      const info = {
        model: pipeline.info,
        device: config.device,
        ...(webgpu ? { webgpu } : {}),
        ...(described ?? {}),
        ...(memory ? { memoryEstimate: memory.estimate } : {}),
        ...(measured !== null ? { measuredPeakRssBytes: measured } : {}),
        executors: builtinExecutorNames(),
        pipelines: registeredPipelines(),
      };
      await pipeline.release();
      if (flags.json) return console.log(JSON.stringify(info, null, 2));
      const m = info.model;
      console.log(`model:      ${m.modelDir}`);
      console.log(`class:      ${m.className}`);
      console.log(`components: ${m.components.join(", ")}`);
      if (described) for (const line of formatLayout(described.layout, described.limits)) console.log(line);
      else console.log(`size:       ${m.width}x${m.height} (multiples of ${m.sizeMultiple})`);
      console.log(`defaults:   ${m.defaults.numInferenceSteps} steps, guidance ${m.defaults.guidanceScale}, scheduler ${m.defaults.scheduler}`);
      console.log(`previews:   ${m.previews ?? "full"}${m.tinyVae ? ` (tiny VAE: ${m.tinyVae})` : ""}`);
      for (const line of memory?.lines ?? []) console.log(line);
      if (measured !== null) console.log(`measured:   peak RSS ${(measured / 1024 ** 3).toFixed(2)} GiB for one 1-step image at the native size (this process, model loaded)`);
      console.log(`device:     ${config.device}`);
      if (webgpu) {
        console.log(`webgpu:     adapter found${webgpu.vulkanDevices.length ? ` (vulkaninfo: ${webgpu.vulkanDevices.join("; ")})` : ""}; experimental (docs/models.md#gpu-without-cuda)`);
        if (webgpu.vulkanDrivers.length) console.log(`            Vulkan drivers: ${webgpu.vulkanDrivers.join(", ")}`);
        for (const w of webgpu.warnings) console.log(`            driver said: ${w}`);
        const { limits: l } = webgpu;
        const mib = (b: number) => `${Math.round(b / 1024 ** 2)} MiB`;
        const f16 = l.shaderF16 === null ? "unknown" : l.shaderF16 ? "yes" : "no";
        console.log(`            buffers: maxBufferSize ${mib(l.maxBufferSize)}, maxStorageBufferBindingSize ${mib(l.maxStorageBufferBindingSize)} (from ${l.source}); shader-f16 ${f16}`);
      }
      console.log(`executors:  ${info.executors.join(", ")}`);
      console.log(`pipelines:  ${info.pipelines.join(", ")}`);
    });
}

/** The estimate at the native size, one image without guidance: "memory: weights …; one image …; budget …". */
function memoryLines(limits: ModelLimits): { lines: string[]; estimate: WorkerBytesEstimate } {
  const estimate = estimateWorkerBytes({ ...limits, memory: limits.memory! }, limits.nativeWidth, limits.nativeHeight, 1, 1);
  const gib = (b: number) => `${(b / 1024 ** 3).toFixed(2)} GiB`;
  return {
    estimate,
    lines: [
      `memory:     weights ${gib(limits.memory!.weightBytes)}; estimated worker peak for one ${limits.nativeWidth}x${limits.nativeHeight} image: ${describeWorkerBytes(estimate)}`,
      `            budget per worker ${limits.memory!.budgetBytes ? gib(limits.memory!.budgetBytes) : "unchecked"} (90 % of this machine's memory, shared by the workers)`,
    ],
  };
}

/** Peak RSS of this process after one 1-step image at the native size (guidance off), bytes. */
async function measurePeak(pipeline: DiffusionPipeline, limits: ModelLimits | null): Promise<number> {
  const request = new OmniDiffusionRequest({ prompt: "a red circle on a blue background", numInferenceSteps: 1, guidanceScale: 1, seed: 1, width: limits?.nativeWidth, height: limits?.nativeHeight });
  const out = await pipeline.generate([request]);
  const err = Object.values(out.errors)[0];
  if (err) throw err;
  return process.resourceUsage().maxRSS * 1024;
}
