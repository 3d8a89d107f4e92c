import type { LoraRef } from "../../core/weights.js";
import { ValidationError } from "../../errors/omni-error.js";

/** `<lora:name>`, `<lora:name:weight>` and A1111 1.5's `<lora:name:te:unet>` (one weight here: the first). */
const TAG = /<lora:([^:<>]+?)(?::([^:<>]*))?(?::[^<>]*)?>/g;

/**
 * A1111's LoRA tags taken out of a prompt: the text without them (what gets encoded) and the LoRAs they name, a
 * name given twice adding its weights (the deltas add). A weight that is not a number is a 400 naming `field`.
 */
export function extractLoraTags(prompt: string, field = "prompt"): { prompt: string; loras: LoraRef[] } {
  const scales = new Map<string, number>();
  let found = false;
  const text = prompt.replace(TAG, (_tag, rawName: string, rawWeight: string | undefined) => {
    found = true;
    const name = rawName.trim();
    const weight = rawWeight === undefined || rawWeight.trim() === "" ? 1 : Number(rawWeight);
    if (!name) throw new ValidationError(`${field}: a <lora:…> tag without a name`, { field });
    if (!Number.isFinite(weight)) throw new ValidationError(`${field}: <lora:${name}:${rawWeight}> has a weight that is not a number`, { field });
    scales.set(name, (scales.get(name) ?? 0) + weight);
    return " ";
  });
  if (!found) return { prompt, loras: [] };
  return { prompt: text.replace(/\s{2,}/g, " ").trim(), loras: [...scales].map(([name, scale]) => ({ name, scale })) };
}
