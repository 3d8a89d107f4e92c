import type { Command } from "commander";
import { parseConfig } from "../core/config.js";
import { builtinExecutorNames } from "../executors/resolve-executor.js";
import { loadPipeline } from "../pipelines/load.js";
import { registeredPipelines } from "../pipelines/registry.js";
import { SCHEDULER_NAMES } from "../schedulers/index.js";

export function addInfoCommand(program: Command): void {
  program
    .command("info")
    .description("print the model, its components, and the available executors and schedulers")
    .option("--model <model>", "model folder, built-in name (tiny-shapes) or pulled Hugging Face id (owner/name)")
    .option("--json", "print JSON")
    .action(async (flags: { model?: string; json?: boolean }) => {
      const config = parseConfig(flags.model ? { model: flags.model } : {});
      const pipeline = await loadPipeline(config.model, { intraOpNumThreads: 1 });
      const info = {
        model: pipeline.info,
        executors: builtinExecutorNames(),
        schedulers: SCHEDULER_NAMES,
        pipelines: registeredPipelines(),
      };
      await pipeline.release();
      if (flags.json) return console.log(JSON.stringify(info, null, 2));
      const m = info.model;
      console.log(`model:      ${m.modelDir}`);
      console.log(`class:      ${m.className}`);
      console.log(`components: ${m.components.join(", ")}`);
      console.log(`size:       ${m.width}x${m.height} (multiples of ${m.sizeMultiple})`);
      console.log(`defaults:   ${m.defaults.numInferenceSteps} steps, guidance ${m.defaults.guidanceScale}, scheduler ${m.defaults.scheduler}`);
      console.log(`executors:  ${info.executors.join(", ")}`);
      console.log(`schedulers: ${info.schedulers.join(", ")}`);
      console.log(`pipelines:  ${info.pipelines.join(", ")}`);
    });
}
