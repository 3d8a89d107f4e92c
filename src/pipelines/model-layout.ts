import type { ModelLimits } from "../core/model-limits.js";
import { closestOffered } from "../schedulers/index.js";
import type { OnnxDType, OnnxIO } from "./onnx-model.js";

/** The ONNX components of a diffusers text-to-image export. */
export const COMPONENTS = ["text_encoder", "unet", "vae_decoder"] as const;

/** How a loaded export is laid out, read from its sessions and configs (what `omni-diffusion info` prints). */
export interface ModelLayout {
  /** `latent`: a VAE decodes the UNet's latents (Stable Diffusion); `pixel`: the UNet denoises pixels. */
  space: "latent" | "pixel";
  latentChannels: number;
  /** Pixels per latent cell. */
  vaeScale: number;
  /** Latents are divided by this before the VAE decoder (`scaling_factor`, 0.18215 for SD). */
  scalingFactor: number;
  components: Record<(typeof COMPONENTS)[number], { inputs: OnnxIO[]; outputs: OnnxIO[] }>;
  /** Dtype of the UNet's `sample`: float16 exports are converted at each boundary. */
  dtype: OnnxDType;
  /** The UNet's timestep input: `perRow` when the export takes one per row, else one per call. */
  timestep: { type: OnnxDType; perRow: boolean };
  /** `classifier-free`: guidance > 1 adds an unconditional row per image; `embedded`: the UNet takes the scale (LCM's `timestep_cond`). */
  guidance: "classifier-free" | "embedded";
  tokenizer: { source: string; maxLength: number };
  schedulerClass: string | null;
  /** SDXL exports only: their conditioning (src/pipelines/sdxl/). */
  sdxl?: SdxlLayout;
}

/** How an SDXL export conditions its UNet. */
export interface SdxlLayout {
  kind: "base" | "turbo" | "refiner" | "ensemble";
  /** Each text encoder with the hidden-state output taken (the penultimate) and its I/O. */
  textEncoders: { component: string; hiddenState: string; inputs: OnnxIO[]; outputs: OnnxIO[] }[];
  /** Width of `encoder_hidden_states` (2048 base, 1280 refiner). */
  contextDim: number;
  /** `time_ids` values per row: 6 (sizes) or 5 (the refiner's sizes + aesthetic score). */
  timeIds: number;
  forceZerosForEmptyPrompt: boolean;
  /** The ensemble: where the refiner takes over by default, and the refiner's own layout. */
  denoisingEnd?: number;
  refiner?: SdxlLayout;
}

function sdxlLines(x: SdxlLayout, indent = ""): string[] {
  const enc = x.textEncoders.map((e) => `${e.component} ${e.hiddenState}`).join(" + ");
  const ids = x.timeIds === 6 ? "original size, crop top-left, target size" : "original size, crop top-left, aesthetic score";
  const head =
    x.kind === "ensemble"
      ? [`${indent}sdxl:       base + refiner ensemble: the refiner takes over at denoising_end ${x.denoisingEnd} (a request's denoising_end)`]
      : [`${indent}sdxl:       ${x.kind}: ${enc} (${x.contextDim} wide), pooled text_embeds; time_ids [batch, ${x.timeIds}] (${ids})${x.forceZerosForEmptyPrompt ? "; no negative prompt: zero uncond embeddings (force_zeros_for_empty_prompt)" : ""}`];
  const io = x.kind === "ensemble" ? [] : x.textEncoders.slice(1).map((e) => `  ${e.component.padEnd(13)} in: ${ios(e.inputs)}; out: ${ios(e.outputs)}`);
  return [...head, ...io, ...(x.refiner ? sdxlLines(x.refiner, "refiner ").map((l) => l.replace(/^refiner sdxl: {7}/, "refiner:    ")) : [])];
}

const shape = (io: OnnxIO) => `[${io.shape.map((d) => (typeof d === "number" ? d : d || "?")).join(", ")}]`;
const ios = (list: OnnxIO[]) => list.map((io) => `${io.name} ${io.type} ${shape(io)}`).join(", ");

/** Human-readable lines for `omni-diffusion info`. */
export function formatLayout(layout: ModelLayout, limits: ModelLimits): string[] {
  const space =
    layout.space === "latent"
      ? `latent: ${layout.latentChannels} channels, VAE x${layout.vaeScale}, latents / ${layout.scalingFactor} before decoding`
      : `pixel space: ${layout.latentChannels} channels`;
  const size =
    limits.spatial === "fixed"
      ? `${limits.nativeWidth}x${limits.nativeHeight} only (fixed-shape export)`
      : `${limits.nativeWidth}x${limits.nativeHeight} native (dynamic export; multiples of ${limits.sizeMultiple})`;
  const guidance =
    layout.guidance === "embedded"
      ? "no CFG: guidance-distilled UNet (timestep_cond), the scale goes into its embedding; one row per image"
      : "classifier-free: guidance_scale > 1 adds an unconditional row per image (<= 1: one row)";
  return [
    `layout:     ${space}`,
    `dtypes:     ${layout.dtype}${layout.dtype === "float16" ? " (converted from/to float32 at each model boundary)" : ""}; timestep ${layout.timestep.type}, ${layout.timestep.perRow ? "one per row" : "one per UNet call"}`,
    ...COMPONENTS.map((c) => `  ${c.padEnd(13)} in: ${ios(layout.components[c].inputs)}; out: ${ios(layout.components[c].outputs)}`),
    `tokenizer:  ${layout.tokenizer.source}, ${layout.tokenizer.maxLength} tokens`,
    `size:       ${size}`,
    `prediction: ${limits.predictionType}${layout.schedulerClass ? ` (scheduler_config: ${layout.schedulerClass})` : ""}`,
    `schedulers: ${limits.schedulers.join(", ")} (those fitting ${limits.predictionType})`,
    ...Object.entries(limits.unfitSchedulers ?? {}).map(([name, why]) => {
      const instead = closestOffered(name, limits.schedulers);
      return `            not ${name}: ${why}${instead ? ` (an A1111 request for it runs ${instead})` : ""}`;
    }),
    `guidance:   ${guidance}`,
    ...(layout.sdxl ? sdxlLines(layout.sdxl) : []),
  ];
}
