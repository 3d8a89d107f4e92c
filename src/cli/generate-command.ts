import type { LoraRef } from "../core/weights.js";
import { loraArg } from "./lora-flags.js";
import { addModelFlags } from "./model-flags.js";
import { subscribe } from "node:diagnostics_channel";
import { writeFile } from "node:fs/promises";
import { extname } from "node:path";
import { SingleBar } from "cli-progress";
import { Option, type Command } from "commander";
import { VAE_CHOICES, type VaeChoice } from "../core/decoders.js";
import { DiffusionEngine } from "../engine/engine.js";
import type { FieldNamer } from "../core/limits.js";
import { SCHEDULER_NAMES } from "../schedulers/index.js";
import { OmniDiffusionRequest } from "../core/request.js";
import { ValidationError } from "../errors/omni-error.js";
import { RETRY_CHANNEL, formatRetry, type RetryEvent } from "../policies/retry-events.js";
import { pngOf, type MaskImage, type RgbImage } from "../utils/png.js";
import {
  ALLOW_NON_NATIVE_FLAG,
  deviceOption,
  engineConfigFromFlags,
  floatArg,
  intArg,
  jsonObjectArg,
  sizeArg,
  spinThreadsOption,
  cpuArenaOption, attentionSlicesOption,
  previewVaeOption,
  previewDecoderOption, lorasDirOption,
  strengthArg,
  type EngineFlags,
} from "./options.js";
import { checkOutPath, imageFileArg, maskFileArg } from "./image-files.js";

interface GenerateFlags extends EngineFlags {
  out: string;
  n: number;
  size?: { width: number; height: number };
  steps?: number;
  guidance?: number;
  seed?: number;
  scheduler?: string;
  negative?: string;
  image?: RgbImage;
  mask?: MaskImage;
  strength?: number;
  vae?: VaeChoice;
  lora?: LoraRef[];
}

/** Request fields as this command's flags, so a refused value names the flag to change. */
const flagOf: FieldNamer = (f) =>
  ({ prompt: "<prompt>", negativePrompt: "--negative", width: "--size", height: "--size", numInferenceSteps: "--steps", numOutputsPerPrompt: "--n", scheduler: "--scheduler", vae: "--vae" })[f];

/** Output file for image i of n: "out.png" for one image, "out-1.png", "out-2.png", ... for several. */
function outPath(base: string, i: number, n: number): string {
  if (n === 1) return base;
  const ext = extname(base) || ".png";
  return `${base.slice(0, base.length - extname(base).length)}-${i + 1}${ext}`;
}

export function addGenerateCommand(program: Command): void {
  addModelFlags(program.command("generate"))
    .description("generate image(s) from a prompt")
    .argument("<prompt>", "text prompt")
    .option("-o, --out <file>", "output PNG path (its folder must exist)", "out.png")
    .option("-n, --n <count>", "number of images", intArg(1), 1)
    .option("--size <WxH>", "image size (default: the model's native size)", sizeArg)
    .option("--steps <n>", "denoising steps", intArg(1))
    .option("--guidance <g>", "classifier-free guidance scale", floatArg(0, 100))
    .option("--seed <s>", "random seed", intArg(0, 0xffffffff))
    .option("--scheduler <name>", `sampler, one that fits the model's prediction type (see \`info\`): ${SCHEDULER_NAMES.join(", ")}`)
    .option("--negative <text>", "negative prompt")
    .option("--image <file.png>", "init image for img2img / inpainting (its size is the output size unless --size is given, which must then match)", imageFileArg)
    .option("--mask <file.png>", "inpainting mask, same size as --image: white = repaint, black = keep; a mask with transparency repaints its fully transparent pixels", (p: string) => maskFileArg(p))
    .addOption(new Option("--vae <which>", "decode with the model's full VAE (default) or its tiny VAE (faster, coarser; docs/models.md#tiny-vae)").choices(VAE_CHOICES))
    .option("--strength <s>", "how much of --image is re-noised, (0, 1]: floor(steps × s) steps run (default 0.8, 1.0 with --mask)", strengthArg)
    .option("--workers <n>", "worker processes", intArg(1, 64))
    .option("--threads <n>", "onnxruntime threads per worker", intArg(1, 256))
    .addOption(spinThreadsOption())
    .addOption(cpuArenaOption())
    .addOption(attentionSlicesOption())
    .addOption(previewVaeOption())
    .addOption(previewDecoderOption())
    .addOption(lorasDirOption())
    .addOption(deviceOption())
    .option("--executor <name>", "executor: a built-in name or module#Export")
    .option("--executor-options <json>", "executor options as JSON", jsonObjectArg)
    .option("--lora <name[:scale]>", "fuse this LoRA of --loras-dir (scale 1 when left out; repeatable)", loraArg)
    .option(...ALLOW_NON_NATIVE_FLAG)
    .action(async (prompt: string, flags: GenerateFlags) => {
      checkOutPath(flags.out); // before the model loads: a wrong path should not cost a generation
      const request = new OmniDiffusionRequest({
        prompt,
        numOutputsPerPrompt: flags.n,
        width: flags.size?.width,
        height: flags.size?.height,
        numInferenceSteps: flags.steps,
        guidanceScale: flags.guidance,
        seed: flags.seed,
        scheduler: flags.scheduler,
        negativePrompt: flags.negative,
        image: flags.image,
        mask: flags.mask,
        strength: flags.strength,
        vae: flags.vae,
        ...(flags.lora?.length ? { loras: flags.lora } : {}),
      });
      const config = engineConfigFromFlags(flags);
      // A remote executor's retries (and start-up waits) are said on stderr, not waited out in silence.
      subscribe(RETRY_CHANNEL, (e) => process.stderr.write(`${formatRetry(e as RetryEvent)}\n`));
      const engine = await DiffusionEngine.create(config);
      const bar = process.stderr.isTTY ? new SingleBar({ format: "denoising [{bar}] {value}/{total} steps", hideCursor: true }, undefined) : null;
      try {
        let started = false;
        // The engine's submission is the one limits check (config and model), its messages in flag names.
        const out = await engine.generate(request, {
          fieldName: flagOf,
          onProgress: (p) => {
            if (!bar) return;
            if (!started) bar.start(p.totalSteps, 0);
            started = true;
            bar.update(p.step);
          },
        });
        bar?.stop();
        for (const [i, img] of out.images.entries()) {
          const file = outPath(flags.out, i, out.images.length);
          await writeFile(file, pngOf(img)).catch((err: NodeJS.ErrnoException) => {
            throw new ValidationError(`--out: cannot write ${file}: ${err.code ?? err.message}`, { field: "--out", cause: err });
          });
          console.log(`wrote ${file} (${img.width}x${img.height}, seed ${img.seed})`);
        }
      } finally {
        bar?.stop();
        await engine.close();
      }
    });
}
