/**
 * Which weights a request runs: a model and the LoRAs fused into it. The step loop batches only requests with
 * the same weights key, and a worker's model cache keeps one loaded pipeline per key (issue 24).
 */

/** A LoRA a request asks for, by name (its file name under `--loras-dir`, without `.safetensors`). */
export interface LoraRef {
  name: string;
  /** Multiplier of the LoRA's delta (`scale · alpha/rank · up·down`); 1 applies it as trained. */
  scale: number;
}

/** A LoRA resolved to its file, as a pipeline loader fuses it. */
export interface LoraSpec extends LoraRef {
  path: string;
}

/**
 * The cache and batching key of (model, LoRA set): LoRAs sorted by name, so the order a client listed them in
 * does not split a batch or load the same weights twice.
 */
export function weightsKey(model: string, loras: readonly LoraRef[] = []): string {
  if (!loras.length) return model;
  const parts = [...loras].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)).map((l) => `${l.name}:${l.scale}`);
  return `${model}+${parts.join("+")}`;
}
