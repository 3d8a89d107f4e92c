import { ValidationError } from "../../errors/omni-error.js";
import { SafetensorsFile } from "./safetensors.js";

/**
 * The two LoRA key formats, read into one list of layers:
 * - kohya (sd-scripts, A1111): `lora_unet_<module with _>.lora_down.weight` / `.lora_up.weight` / `.alpha`,
 *   `lora_te_…` for the text encoder. The module path is flattened with `_`, so it is matched against the graph's
 *   module paths flattened the same way, never split back.
 * - diffusers / PEFT: `unet.<module>.lora_A.weight` / `.lora_B.weight` (`text_encoder.` for the text encoder,
 *   optionally under `base_model.model.`, optionally `.default` before `.weight`), alpha = rank unless an
 *   `<module>.alpha` tensor says otherwise.
 */

export type LoraComponent = "unet" | "text_encoder";

export interface LoraLayer {
  component: LoraComponent;
  /** The key prefix as written in the file (messages name it). */
  key: string;
  /** How to find the module: a dotted path (PEFT) or kohya's underscore-flattened one. */
  match: { dotted: string } | { flat: string };
  down: string;
  up: string;
  /** Name of the alpha tensor, when the file has one. */
  alpha?: string;
}

const KOHYA = /^lora_(unet|te)_(.+)\.(lora_down\.weight|lora_up\.weight|alpha)$/;
const PEFT = /^(?:base_model\.model\.)?(unet|text_encoder)\.(.+?)\.(lora_A(?:\.default)?\.weight|lora_B(?:\.default)?\.weight|alpha)$/;
/** Network types other than plain LoRA/LoCon: refused by name instead of fused wrongly. */
const UNSUPPORTED = /(hada_w|lokr_w|lora_mid|dora_scale|\.diff$|\.diff_b$|oft_)/;

/** Reads `file`'s keys into layers; unknown or unsupported keys are a ValidationError naming a few. */
export function readLoraLayers(file: SafetensorsFile): LoraLayer[] {
  const layers = new Map<string, Partial<LoraLayer> & { key: string }>();
  const unsupported: string[] = [];
  const unknown: string[] = [];
  for (const name of file.tensors.keys()) {
    if (UNSUPPORTED.test(name)) {
      unsupported.push(name);
      continue;
    }
    const k = KOHYA.exec(name);
    const p = k ? null : PEFT.exec(name);
    if (!k && !p) {
      unknown.push(name);
      continue;
    }
    const component: LoraComponent = (k ? k[1] : p![1]) === "unet" ? "unet" : "text_encoder";
    const module = k ? k[2]! : p![2]!;
    const part = k ? k[3]! : p![3]!;
    const key = k ? `lora_${k[1]}_${module}` : `${p![1]}.${module}`;
    const layer = layers.get(key) ?? { key, component, match: k ? { flat: module } : { dotted: module } };
    if (part.startsWith("lora_down") || part.startsWith("lora_A")) layer.down = name;
    else if (part.startsWith("lora_up") || part.startsWith("lora_B")) layer.up = name;
    else layer.alpha = name;
    layers.set(key, layer);
  }
  if (unsupported.length) {
    throw new ValidationError(
      `${file.path}: unsupported LoRA network keys (LoHa, LoKr, Tucker LoCon, DoRA, OFT or full diffs are not fused): ${sample(unsupported)}`,
      { field: "loras", data: { path: file.path, keys: unsupported.slice(0, 10) } },
    );
  }
  if (unknown.length) {
    throw new ValidationError(`${file.path}: keys in neither the kohya (lora_unet_…/lora_te_…) nor the diffusers/PEFT (unet.…lora_A/lora_B) format: ${sample(unknown)}`, {
      field: "loras",
      data: { path: file.path, keys: unknown.slice(0, 10) },
    });
  }
  const out: LoraLayer[] = [];
  for (const l of layers.values()) {
    if (!l.down || !l.up) throw new ValidationError(`${file.path}: ${l.key} lacks its ${l.down ? "up (lora_up / lora_B)" : "down (lora_down / lora_A)"} weight`, { field: "loras", data: { path: file.path } });
    out.push(l as LoraLayer);
  }
  if (!out.length) throw new ValidationError(`${file.path} holds no LoRA weights`, { field: "loras", data: { path: file.path } });
  return out;
}

/** A few names, then how many more. */
export function sample(names: string[], n = 3): string {
  return names.slice(0, n).join(", ") + (names.length > n ? ` (and ${names.length - n} more)` : "");
}
