import { isFinished, rowsOf } from "./denoise-state.js";
import { sizeKey, type CallBudgetStats, type CallPlanner, type PlannedRequest } from "./call-planner.js";
import type { UnetCall } from "./types.js";
import type { UnetProfile } from "./unet-profile.js";

/**
 * Compute-budget planning (`maxCallMs` a number or `"auto"`): calls are sized by what they cost, not by rows.
 *
 * - **Admission** (`continuous`): each image size has its own group, and a waiting request joins its group
 *   while the group's call stays within `maxBatchRows` rows and within the budget, priced by the
 *   {@link UnetProfile}. A request that does not fit holds back the later requests of its own size (so a big
 *   `n` is not starved by small ones behind it) but not those of other sizes, whose groups have room of their
 *   own. A request bigger than the budget joins an empty group and runs alone.
 * - **Group choice**: every UNet row waiting for its next step (the size's active requests and those queued
 *   behind them) gets an equal share of the UNet's time, priced by the profile: the size group that has
 *   received the least estimated UNet time per row goes next. A call of cheap rows then comes round often
 *   and a call of expensive rows rarely, but surely: the small requests get their calls between the big
 *   ones instead of waiting behind them, and the big ones keep the share their rows are owed however many
 *   small ones arrive. (The rows rule shared out calls by rows; this shares out time.) A group that
 *   (re)appears starts level with the least-served group present: no credit is banked while idle. Ties go
 *   to the group of the oldest request.
 */
export class CostPlanner implements CallPlanner {
  readonly profile: UnetProfile;
  readonly #maxRows: number;
  readonly #maxCallMs: number | "auto";
  /** Size → estimated UNet ms per row its group has received, relative to the least-served group present. */
  #served = new Map<string, number>();
  /** Size → rows owed a share at the last pick (active and queued): what a call of the group is divided by. */
  #weight = new Map<string, number>();

  constructor(opts: { maxBatchRows: number; maxCallMs: number | "auto"; profile: UnetProfile }) {
    this.#maxRows = opts.maxBatchRows;
    this.#maxCallMs = opts.maxCallMs;
    this.profile = opts.profile;
  }

  /** What one call of `size` may cost now: the explicit budget, or the knee of the profile; null while unknown. */
  budgetMs(size: string): number | null {
    if (typeof this.#maxCallMs === "number") return this.#maxCallMs;
    return this.profile.knee(size, this.#maxRows)?.ms ?? null;
  }

  /**
   * True when a call of `rows` rows of `size` stays within `maxBatchRows` and the budget (or the budget is not
   * known yet). `"auto"` compares rows with the knee's rows: the knee is where the measurements are.
   */
  fits(size: string, rows: number): boolean {
    if (rows > this.#maxRows) return false;
    if (this.#maxCallMs === "auto") {
      const knee = this.profile.knee(size, this.#maxRows);
      return knee === null || rows <= knee.rows;
    }
    const cost = this.profile.estimate(size, rows);
    return cost === null || cost <= this.#maxCallMs * (1 + 1e-9);
  }

  admit<T extends PlannedRequest>(pending: readonly T[], active: readonly T[]): T[] {
    const rows = new Map<string, number>();
    for (const t of active) if (!isFinished(t.state!)) rows.set(sizeKey(t.params), (rows.get(sizeKey(t.params)) ?? 0) + rowsOf(t.state!));
    const blocked = new Set<string>();
    const joining: T[] = [];
    for (const t of pending) {
      const size = sizeKey(t.params);
      if (blocked.has(size)) continue;
      const r = rows.get(size) ?? 0;
      if (r > 0 && !this.fits(size, r + t.rows)) {
        blocked.add(size);
        continue;
      }
      joining.push(t);
      rows.set(size, r + t.rows);
    }
    return joining;
  }

  pick<T extends PlannedRequest>(active: readonly T[], pending: readonly T[] = []): T[] {
    const groups = new Map<string, T[]>();
    const weight = new Map<string, number>();
    for (const t of active) {
      if (isFinished(t.state!)) continue;
      const size = sizeKey(t.params);
      const g = groups.get(size);
      if (g) g.push(t);
      else groups.set(size, [t]);
      weight.set(size, (weight.get(size) ?? 0) + rowsOf(t.state!));
    }
    for (const t of pending) if (weight.has(sizeKey(t.params))) weight.set(sizeKey(t.params), weight.get(sizeKey(t.params))! + t.rows);
    this.#weight = weight;
    const present = [...groups.keys()].filter((s) => this.#served.has(s)).map((s) => this.#served.get(s)!);
    const floor = present.length ? Math.min(...present) : 0;
    const served = new Map<string, number>();
    let best: string | null = null;
    for (const size of groups.keys()) {
      const v = (this.#served.get(size) ?? floor) - floor;
      served.set(size, v);
      if (best === null || v < served.get(best)!) best = size;
    }
    this.#served = served;
    return best === null ? [] : groups.get(best)!;
  }

  stepped(calls: readonly UnetCall[]): void {
    for (const c of calls) {
      if (!c.states.length) continue;
      const size = sizeKey(c.states[0]!.params);
      this.profile.observe(size, c.rows, c.ms);
      // Charged at the profile's price, not the measured time: one slow call (a page fault, another process)
      // does not cost its group its turns, and a fixed profile gives the same order on every run.
      const cost = this.profile.estimate(size, c.rows) ?? c.ms;
      this.#served.set(size, (this.#served.get(size) ?? 0) + Math.max(cost, 1e-6) / (this.#weight.get(size) ?? c.rows));
    }
  }

  stats(): CallBudgetStats {
    return {
      maxCallMs: this.#maxCallMs,
      maxBatchRows: this.#maxRows,
      sizes: this.profile.snapshot(this.#maxRows).map((s) => {
        const b = this.budgetMs(s.size);
        return { ...s, budgetMs: b === null ? null : Math.round(b * 1000) / 1000 };
      }),
    };
  }
}
