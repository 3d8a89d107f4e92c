import type { DenoiseState, ResolvedParams } from "./denoise-state.js";
import type { UnetCall } from "./types.js";
import type { UnetProfile, UnetProfileSize } from "./unet-profile.js";

/**
 * The compute budget of one UNet call: `"auto"` (the default: per image size, the cost of the knee of the
 * learned {@link UnetProfile}), a number of ms for every size, or `"off"` (no budget: rows alone, the rule
 * before budgets existed).
 */
export type MaxCallMs = number | "auto" | "off";

/** What a planner needs of a request in the step loop. */
export interface PlannedRequest {
  /** UNet rows estimated before the request was prepared (`rowsOfRequest`). */
  readonly rows: number;
  readonly params: ResolvedParams;
  /** Set once the request joined the active set. */
  readonly state: DenoiseState | null;
}

/** The budget and the profile behind it, as `getStats` reports them (`WorkerStats.callBudget`). */
export interface CallBudgetStats {
  maxCallMs: MaxCallMs;
  maxBatchRows: number;
  /** Per image size: measured calls and the knee; `budgetMs` is what a call of that size may cost now (null: not capped yet). */
  sizes: (UnetProfileSize & { budgetMs: number | null })[];
}

/**
 * How the step loop sizes its UNet calls: which waiting requests join under `continuous` admission, and which
 * shape group steps when several are active. `request` and `none` admission do not ask it who joins.
 */
export interface CallPlanner {
  /** The waiting requests (in arrival order) that join the active set now, under `continuous` admission. */
  admit<T extends PlannedRequest>(pending: readonly T[], active: readonly T[]): T[];
  /** The shape group to step in this iteration, from the active requests that are not finished (`pending`: those waiting to join). */
  pick<T extends PlannedRequest>(active: readonly T[], pending: readonly T[]): T[];
  /** The calls the last step made (a profile learns from them). */
  stepped(calls: readonly UnetCall[]): void;
  readonly profile: UnetProfile;
  stats(): CallBudgetStats;
}

/** The image size key (`WxH`) a request's profile is kept under: one latent shape per size for a given model. */
export function sizeKey(p: Pick<ResolvedParams, "width" | "height">): string {
  return `${p.width}x${p.height}`;
}
