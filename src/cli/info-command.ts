import type { Command } from "commander";
import { parseConfig } from "../core/config.js";
import type { ModelLimits } from "../core/model-limits.js";
import { builtinExecutorNames } from "../executors/resolve-executor.js";
import { loadPipeline } from "../pipelines/load.js";
import { formatLayout, type ModelLayout } from "../pipelines/model-layout.js";
import { registeredPipelines } from "../pipelines/registry.js";
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
    .option("--json", "print JSON")
    .action(async (flags: Pick<EngineFlags, "model" | "device"> & { json?: boolean }) => {
      const config = parseConfig({ ...(flags.model ? { model: flags.model } : {}), ...(flags.device ? { device: flags.device } : {}) });
      const pipeline = await loadPipeline(config.model, { intraOpNumThreads: 1, device: config.device });
      const described = isDescribed(pipeline) ? { layout: pipeline.layout(), limits: pipeline.describe() } : null;
      const info = {
        model: pipeline.info,
        device: config.device,
        ...(described ?? {}),
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
      console.log(`device:     ${config.device}`);
      console.log(`executors:  ${info.executors.join(", ")}`);
      console.log(`pipelines:  ${info.pipelines.join(", ")}`);
    });
}
