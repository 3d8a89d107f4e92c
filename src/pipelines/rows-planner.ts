import { isFinished, rowsOf, shapeKey } from "./denoise-state.js";
import { sizeKey, type CallBudgetStats, type CallPlanner, type PlannedRequest } from "./call-planner.js";
import type { UnetCall } from "./types.js";
import type { UnetProfile } from "./unet-profile.js";

/**
 * The rule before compute budgets (`maxCallMs: "off"`): rows are the only unit. Waiting requests join in
 * arrival order while the whole active set stays within `maxBatchRows` rows (the head of the queue is never
 * bypassed; a request bigger than that runs alone), and with several shapes active the group with the largest
 * rows × (1 + iterations it was skipped) steps. It still feeds the profile, so `getStats` shows what the
 * calls cost.
 */
export class RowsPlanner implements CallPlanner {
  readonly profile: UnetProfile;
  readonly #maxRows: number;
  #skipped = new Map<string, number>();

  constructor(opts: { maxBatchRows: number; profile: UnetProfile }) {
    this.#maxRows = opts.maxBatchRows;
    this.profile = opts.profile;
  }

  admit<T extends PlannedRequest>(pending: readonly T[], active: readonly T[]): T[] {
    let rows = active.reduce((a, t) => a + rowsOf(t.state!), 0);
    const joining: T[] = [];
    for (const next of pending) {
      if ((active.length || joining.length) && rows + next.rows > this.#maxRows) break;
      joining.push(next);
      rows += next.rows;
    }
    return joining;
  }

  /** Largest rows × (1 + times skipped); ties go to the group of the oldest request. */
  pick<T extends PlannedRequest>(active: readonly T[]): T[] {
    const groups = new Map<string, T[]>();
    for (const t of active) {
      if (isFinished(t.state!)) continue;
      const key = shapeKey(t.state!);
      const g = groups.get(key);
      if (g) g.push(t);
      else groups.set(key, [t]);
    }
    if (groups.size <= 1) {
      this.#skipped.clear();
      return groups.values().next().value ?? [];
    }
    let best: { key: string; score: number } | null = null;
    for (const [key, ts] of groups) {
      const score = ts.reduce((a, t) => a + rowsOf(t.state!), 0) * (1 + (this.#skipped.get(key) ?? 0));
      if (!best || score > best.score) best = { key, score };
    }
    const skipped = new Map<string, number>();
    for (const key of groups.keys()) if (key !== best?.key) skipped.set(key, (this.#skipped.get(key) ?? 0) + 1);
    this.#skipped = skipped;
    return groups.get(best!.key)!;
  }

  stepped(calls: readonly UnetCall[]): void {
    for (const c of calls) if (c.states.length) this.profile.observe(sizeKey(c.states[0]!.params), c.rows, c.ms);
  }

  stats(): CallBudgetStats {
    return { maxCallMs: "off", maxBatchRows: this.#maxRows, sizes: this.profile.snapshot(this.#maxRows).map((s) => ({ ...s, budgetMs: null })) };
  }
}
