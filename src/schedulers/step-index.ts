/**
 * Where a sampler is on its schedule (diffusers' `index_for_timestep`, `_init_step_index`, `set_begin_index`):
 * finding a timestep's index, checking a begin index, and the errors every sampler raises for a timestep it
 * does not know or a `step` before `setTimesteps`.
 */
import { ValidationError } from "../errors/omni-error.js";

/**
 * diffusers' `index_for_timestep`: where `t` sits in the schedule. With duplicates the *second* match is
 * taken, so a run started mid-schedule (img2img) doesn't skip a sigma. Exact match first; a near match
 * (|Δ| ≤ 1e-3) is accepted so a timestep that went through float32 still resolves. Returns -1 if absent.
 */
export function indexForTimestep(timesteps: readonly number[], t: number): number {
  const exact: number[] = [];
  for (let i = 0; i < timesteps.length && exact.length < 2; i++) if (timesteps[i] === t) exact.push(i);
  if (exact.length > 0) return exact.length > 1 ? exact[1]! : exact[0]!;
  let best = -1;
  let bestD = 1e-3;
  for (let i = 0; i < timesteps.length; i++) {
    const d = Math.abs(timesteps[i]! - t);
    if (d <= bestD) {
      best = i;
      bestD = d;
    }
  }
  return best;
}

/**
 * The step index a scheduler uses for timestep `t` (diffusers' `_step_index`): the running counter once
 * stepping has begun. The first call starts at the schedule's beginning when it passes the schedule's first
 * timestep (diffusers' `set_begin_index(0)`, what a text-to-image run means); only another timestep is looked
 * up (`index_for_timestep`, a run started mid-schedule for img2img). Looking up the first timestep too broke
 * schedules whose rounded timesteps repeat at the top (Karras sigmas on a cosine schedule: 999, 999, 998, ...):
 * the lookup takes the second 999, the run starts one step late and its last step finds "all steps done".
 * `fallback` is the index for a timestep that is not on the schedule (-1: refuse it).
 */
export function resolveStepIndex(current: number | null, timesteps: readonly number[], t: number, name: string, fallback = -1): number {
  if (timesteps.length === 0) throw notReady(name);
  if (current !== null) {
    if (current >= timesteps.length) {
      throw new ValidationError(`scheduler "${name}": all ${timesteps.length} steps are done; call setTimesteps() again`, {
        field: "timestep",
      });
    }
    return current;
  }
  if (Math.abs(timesteps[0]! - t) <= 1e-3) return 0;
  const i = indexForTimestep(timesteps, t);
  if (i >= 0) return i;
  if (fallback >= 0) return fallback;
  throw unknownTimestep(name, t);
}

/**
 * The schedule index `addNoise` uses for timestep `t`: diffusers' `index_for_timestep` (the second of two
 * repeats, the one a mid-schedule start or an inpainting re-noise means), refusing a timestep off the schedule.
 */
export function noiseIndex(timesteps: readonly number[], t: number, name: string): number {
  if (timesteps.length === 0) throw notReady(name);
  const i = indexForTimestep(timesteps, t);
  if (i < 0) throw unknownTimestep(name, t);
  return i;
}

/**
 * diffusers' `set_begin_index`: the step index a run that starts mid-schedule (img2img) begins at, checked
 * against the schedule. Needed where rounded timesteps repeat (Karras sigmas on a cosine schedule: 999, 999, ...),
 * since a lookup by timestep cannot tell the repeats apart.
 */
export function checkBeginIndex(index: number, timesteps: readonly number[], name: string): number {
  if (timesteps.length === 0) throw notReady(name);
  if (!Number.isInteger(index) || index < 0 || index >= timesteps.length) {
    throw new ValidationError(`scheduler "${name}": begin index ${index} is outside the ${timesteps.length}-step schedule`, { field: "timestep" });
  }
  return index;
}

/** Throws the error every scheduler raises when `step` / `scaleModelInput` runs before `setTimesteps`. */
export function notReady(name: string): ValidationError {
  return new ValidationError(`scheduler "${name}": call setTimesteps() before stepping`, { field: "scheduler" });
}

/** Throws for a timestep that is not on the current schedule. */
export function unknownTimestep(name: string, t: number): ValidationError {
  return new ValidationError(`scheduler "${name}": timestep ${t} is not in the current schedule`, { field: "timestep" });
}
