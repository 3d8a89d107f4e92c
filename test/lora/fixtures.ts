/** The LoRA fixtures (training/fixtures/make_lora_fixtures.py): a tiny SD 1.x export, its LoRAs and the torch references. */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { LoraSpec } from "../../src/core/weights.js";

export const LORA_FIXTURES = fileURLToPath(new URL("../fixtures/loras/", import.meta.url));
export const LORA_MODEL = join(LORA_FIXTURES, "model");

export interface LoraExpected {
  request: { prompt: string; width: number; height: number; numInferenceSteps: number; guidanceScale: number; seed: number };
  latentShape: [number, number, number];
  cases: Record<string, { latents: string; pixels: string }>;
}

export const loraExpected: LoraExpected = JSON.parse(readFileSync(join(LORA_FIXTURES, "expected.json"), "utf8"));

export function lora(name: string, scale: number): LoraSpec {
  return { name, scale, path: join(LORA_FIXTURES, `${name}.safetensors`) };
}
