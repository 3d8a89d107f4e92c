import { InvalidArgumentError } from "commander";
import type { LoraRef } from "../core/weights.js";

/** `--lora name[:scale]` (repeatable) → LoraRef, scale 1 when left out; a bad scale names the flag. */
export function loraArg(value: string, previous: LoraRef[] = []): LoraRef[] {
  const at = value.lastIndexOf(":");
  const name = (at > 0 ? value.slice(0, at) : value).trim();
  const scale = at > 0 ? Number(value.slice(at + 1)) : 1;
  if (!name) throw new InvalidArgumentError(`expected name[:scale], got "${value}"`);
  if (!Number.isFinite(scale)) throw new InvalidArgumentError(`scale of "${value}" is not a number (expected name[:scale], e.g. ink:0.8)`);
  return [...previous, { name, scale }];
}
