import type { LoraSpec } from "../../core/weights.js";
import { ConfigError, ValidationError } from "../../errors/omni-error.js";
import { fuseLoras, type FusedLoras, type GraphEdit } from "./fuse-loras.js";

/**
 * The session options that carry fused LoRAs into a pipeline's sessions, and the check that the pipeline class
 * applied them: a custom pipeline that builds its sessions some other way must not run without its LoRAs silently.
 */
export async function loraGraphEdits(modelDir: string, loras: readonly LoraSpec[]): Promise<{ graphEdits: Record<string, GraphEdit>; fused: FusedLoras; unapplied(): string[] }> {
  for (const l of loras) {
    if (!Number.isFinite(l.scale)) throw new ValidationError(`LoRA ${l.name}: scale ${l.scale} is not a finite number`, { field: "loras" });
  }
  const fused = await fuseLoras(modelDir, loras);
  const applied = new Set<string>();
  const graphEdits: Record<string, GraphEdit> = {};
  for (const [component, edit] of Object.entries(fused.edits)) {
    graphEdits[component] = (graph) => {
      applied.add(component);
      return edit!(graph);
    };
  }
  return { graphEdits, fused, unapplied: () => Object.keys(graphEdits).filter((c) => !applied.has(c)) };
}

/** The error for a pipeline class whose sessions never took the fused weights. */
export function lorasNotApplied(className: string, components: string[]): ConfigError {
  return new ConfigError(`pipeline class ${className} does not apply LoRAs (its ${components.join(", ")} session never took the fused weights)`, { field: "loras" });
}
