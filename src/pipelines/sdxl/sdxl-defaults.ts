import type { SchedulerConfig } from "../../schedulers/types.js";

/**
 * Defaults of an SDXL export, picked from its scheduler config: SDXL-Turbo ships Euler ancestral with trailing
 * spacing (adversarially distilled: 1-4 steps, no guidance; diffusers' model card runs 1 step at guidance 0.0);
 * the base and the refiner ship Euler with leading spacing: guidance 5.0 as diffusers' SDXL pipelines default
 * to, and the 20 steps this engine defaults every SD model to (diffusers' 50 is slow on a CPU).
 */
export function sdxlDefaults(scheduler: SchedulerConfig): { numInferenceSteps: number; guidanceScale: number; turbo: boolean } {
  const turbo = scheduler._class_name === "EulerAncestralDiscreteScheduler" && scheduler.timestep_spacing === "trailing";
  return turbo ? { numInferenceSteps: 1, guidanceScale: 0, turbo } : { numInferenceSteps: 20, guidanceScale: 5.0, turbo };
}
