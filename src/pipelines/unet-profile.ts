/**
 * What one UNet call costs, per image size and rows: the step loop's compute budget is priced with it.
 * Learned online from the loop's own calls, so it costs nothing at start-up and follows the machine's load.
 */

/** ms of one call of `rows` rows = `fixedMs + perRowMs × rows`: a profile given instead of learned (tests, benches). */
export interface FixedUnetCost {
  fixedMs: number;
  perRowMs: number;
}

/** Options of a {@link UnetProfile}. */
export interface UnetProfileOptions {
  /** Image size (`"512x512"`) → its cost. Sizes listed here are never learned. */
  fixed?: Readonly<Record<string, FixedUnetCost>>;
  /** Learn the sizes not in `fixed` from observed calls (default true; false freezes the profile). */
  learn?: boolean;
  /** A call grows only while a bigger one is more than this share cheaper per row (default 0.05). */
  epsilon?: number;
  /** How many recent calls of a call size its figure is the median of (default 15). */
  window?: number;
  /**
   * A call size not seen in this many calls of its image size is forgotten (default 200), so the loop measures
   * it again: a figure taken on a cold or briefly loaded machine does not pin the knee for good.
   */
  forgetAfter?: number;
}

/** Where a size's knee comes from: its own calls, the fixed figures, or another size scaled by pixel count. */
export type UnetKneeSource = "learned" | "fixed" | "extrapolated";

/**
 * The call size past which more rows stop paying for themselves, and what a call of that size costs: the
 * default budget of a UNet call (`maxCallMs: "auto"`).
 */
export interface UnetKnee {
  rows: number;
  ms: number;
  source: UnetKneeSource;
  /**
   * A call size not measured yet: twice the biggest one measured while that one was still the cheapest per
   * row by more than epsilon, or half the only one measured; the loop finds out what it gains.
   */
  exploring: boolean;
}

/** One image size's profile as `getStats` reports it (`WorkerStats.unetProfile`). */
export interface UnetProfileSize {
  /** Image size, `WxH`. */
  size: string;
  /** Measured call sizes: rows, median ms of its recent calls, calls seen. Empty for a fixed size. */
  calls: { rows: number; ms: number; n: number }[];
  /** The fixed figures, for a size given in {@link UnetProfileOptions.fixed}. */
  fixed?: FixedUnetCost;
  /** Null until the loop knows enough (two call sizes of this size, or of another size to scale from). */
  knee: UnetKnee | null;
}

interface Bucket {
  rows: number;
  /** Median of `recent`. */
  ms: number;
  n: number;
  recent: number[];
  /** The image size's call count when this call size was last seen. */
  seen: number;
}

const pixels = (size: string): number => {
  const [w, h] = size.split("x").map(Number);
  return (w ?? 0) * (h ?? 0) || 1;
};

/**
 * Per image size, the ms of one UNet call (the whole `pipeline.step` of its rows: tensor packing, UNet,
 * sampler math) as a function of its rows, learned from the calls the step loop makes.
 *
 * Each call size seen (rows) keeps the median ms of its recent calls (robust to a call slowed by another
 * process); the first call at a new size is dropped once a second comes (onnxruntime plans its memory on
 * the first run at a new input shape, which a steady server does not pay), the knee counts only call sizes
 * seen twice, and a call size not seen for a while is forgotten, so it is measured again. A call size
 * between two measured ones is interpolated; below the smallest, the cost falls no lower than in proportion
 * to rows; above the largest, it grows in proportion to rows (no further gain assumed, so a budget never
 * admits more than the measurements support). A size not measured yet is priced from the measured size
 * nearest in pixel count, a row of it counting as its pixel ratio of rows of that one.
 *
 * The knee of a size is the smallest measured call size from which no bigger measured call is more than
 * epsilon cheaper per row: batching past it only adds latency. While the biggest measured call is itself the
 * knee (still gaining), and again once no bigger call was seen for `forgetAfter` calls (a curve may be flat
 * for a while and gain again further on), the knee is put at twice its rows, so bigger calls get tried;
 * while only one call size of 4 rows or more was measured (steady traffic repeats one size), at half its
 * rows, so a second size gets measured.
 *
 * @example
 * ```ts
 * import { UnetProfile } from "omni-diffusion";
 *
 * const fixed = new UnetProfile({ fixed: { "64x64": { fixedMs: 2, perRowMs: 0.1 }, "512x512": { fixedMs: 2, perRowMs: 10 } } });
 * fixed.estimate("512x512", 2); // 22
 * const learned = new UnetProfile();
 * for (const [rows, ms] of [[1, 5], [1, 5], [4, 8], [4, 8]]) learned.observe("32x32", rows, ms);
 * learned.knee("32x32", 32); // { rows: 8, ms: 16, source: "learned", exploring: true }
 * ```
 */
export class UnetProfile {
  readonly #fixed: ReadonlyMap<string, FixedUnetCost>;
  readonly #learn: boolean;
  readonly #epsilon: number;
  readonly #window: number;
  readonly #forgetAfter: number;
  /** Size → measured call sizes, ascending by rows. */
  readonly #buckets = new Map<string, Bucket[]>();
  /** Size → calls observed. */
  readonly #calls = new Map<string, number>();
  /** Size → its call count when a call bigger than any measured was last seen. */
  readonly #grownAt = new Map<string, number>();

  constructor(opts: UnetProfileOptions = {}) {
    this.#fixed = new Map(Object.entries(opts.fixed ?? {}));
    this.#learn = opts.learn ?? true;
    this.#epsilon = opts.epsilon ?? 0.05;
    this.#window = opts.window ?? 15;
    this.#forgetAfter = opts.forgetAfter ?? 200;
  }

  /** Records one call of `rows` rows at image size `size` that took `ms`. */
  observe(size: string, rows: number, ms: number): void {
    if (!this.#learn || this.#fixed.has(size) || !(rows > 0) || !(ms >= 0) || !Number.isFinite(ms)) return;
    const calls = (this.#calls.get(size) ?? 0) + 1;
    this.#calls.set(size, calls);
    const buckets = (this.#buckets.get(size) ?? []).filter((x) => x.rows === rows || calls - x.seen <= this.#forgetAfter);
    this.#buckets.set(size, buckets);
    const b = buckets.find((x) => x.rows === rows);
    if (!b) {
      if (rows > (buckets[buckets.length - 1]?.rows ?? 0)) this.#grownAt.set(size, calls);
      buckets.push({ rows, ms, n: 1, recent: [ms], seen: calls });
      buckets.sort((x, y) => x.rows - y.rows);
      return;
    }
    if (b.n === 1) b.recent = [];
    b.recent.push(ms);
    if (b.recent.length > this.#window) b.recent.shift();
    b.ms = median(b.recent);
    b.n++;
    b.seen = calls;
  }

  /** Estimated ms of one call of `rows` rows at `size`; null when nothing is known of any size. */
  estimate(size: string, rows: number): number | null {
    const f = this.#fixed.get(size);
    if (f) return f.fixedMs + f.perRowMs * rows;
    const own = this.#buckets.get(size);
    if (own?.length) return interpolate(own, rows);
    const near = this.#nearest(size, () => true);
    return near ? this.estimate(near, (rows * pixels(size)) / pixels(near)) : null;
  }

  /**
   * The knee of `size` (calls of at most `maxRows` rows): from its own measurements (two call sizes, or one
   * of 4 rows or more to probe below), else scaled from the nearest size that has a knee of its own; null
   * while neither exists (the loop then lets calls grow to `maxRows` and learns).
   */
  knee(size: string, maxRows: number): UnetKnee | null {
    const own = this.#ownKnee(size, maxRows);
    if (own) return own;
    const near = this.#nearest(size, (s) => this.#ownKnee(s, maxRows) !== null);
    if (!near) return null;
    const k = this.#ownKnee(near, maxRows)!;
    const rows = Math.min(maxRows, Math.max(1, Math.floor((k.rows * pixels(near)) / pixels(size))));
    return { rows, ms: this.estimate(size, rows)!, source: "extrapolated", exploring: false };
  }

  /** Every size known, with its measurements and knee (what `getStats` reports). */
  snapshot(maxRows: number): UnetProfileSize[] {
    const sizes = [...new Set([...this.#fixed.keys(), ...this.#buckets.keys()])].sort((a, b) => pixels(a) - pixels(b));
    return sizes.map((size) => {
      const f = this.#fixed.get(size);
      const calls = (this.#buckets.get(size) ?? []).map((b) => ({ rows: b.rows, ms: round(b.ms), n: b.n }));
      const k = this.knee(size, maxRows);
      return { size, calls, ...(f ? { fixed: f } : {}), knee: k && { ...k, ms: round(k.ms) } };
    });
  }

  #ownKnee(size: string, maxRows: number): UnetKnee | null {
    const f = this.#fixed.get(size);
    if (f) {
      const rows = kneeOf(Array.from({ length: maxRows }, (_, i) => ({ rows: i + 1, ms: f.fixedMs + f.perRowMs * (i + 1) })), this.#epsilon);
      return { rows, ms: f.fixedMs + f.perRowMs * rows, source: "fixed", exploring: false };
    }
    // A call size seen once is not measured yet: its only call may have paid for a new input shape.
    const buckets = (this.#buckets.get(size) ?? []).filter((b) => b.rows <= maxRows && b.n >= 2);
    if (buckets.length === 1 && buckets[0]!.rows >= 4) {
      const probe = Math.floor(buckets[0]!.rows / 2);
      return { rows: probe, ms: interpolate(buckets, probe), source: "learned", exploring: true };
    }
    if (buckets.length < 2) return null;
    const rows = kneeOf(buckets, this.#epsilon);
    const largest = buckets[buckets.length - 1]!.rows;
    // A curve may be flat for a while and gain again further on: bigger calls get tried again once in a while.
    const stale = (this.#calls.get(size) ?? 0) - (this.#grownAt.get(size) ?? 0) > this.#forgetAfter;
    if ((rows === largest || stale) && largest < maxRows) {
      const probe = Math.min(maxRows, 2 * largest);
      return { rows: probe, ms: interpolate(buckets, probe), source: "learned", exploring: true };
    }
    return { rows, ms: interpolate(buckets, rows), source: "learned", exploring: false };
  }

  /** The size nearest to `size` in pixel count (other than itself) that `ok` accepts, among those known. */
  #nearest(size: string, ok: (s: string) => boolean): string | null {
    let best: string | null = null;
    let dist = Infinity;
    for (const s of [...this.#fixed.keys(), ...this.#buckets.keys()]) {
      if (s === size || !ok(s)) continue;
      const d = Math.abs(Math.log(pixels(s) / pixels(size)));
      if (d < dist) [best, dist] = [s, d];
    }
    return best;
  }
}

/** The smallest measured call size from which no bigger one is more than `epsilon` cheaper per row. */
function kneeOf(buckets: readonly { rows: number; ms: number }[], epsilon: number): number {
  let cheapestAbove = Infinity;
  let knee = buckets[buckets.length - 1]!.rows;
  for (let i = buckets.length - 1; i >= 0; i--) {
    const b = buckets[i]!;
    const perRow = b.ms / b.rows;
    if (cheapestAbove >= (1 - epsilon) * perRow) knee = b.rows;
    cheapestAbove = Math.min(cheapestAbove, perRow);
  }
  return knee;
}

/** ms at `rows` from measured call sizes (ascending): see {@link UnetProfile}. */
function interpolate(buckets: readonly Bucket[], rows: number): number {
  const first = buckets[0]!;
  const last = buckets[buckets.length - 1]!;
  if (rows >= last.rows) return (last.ms * rows) / last.rows;
  if (rows <= first.rows) {
    const line = buckets.length > 1 ? first.ms - ((first.rows - rows) * (buckets[1]!.ms - first.ms)) / (buckets[1]!.rows - first.rows) : first.ms;
    return Math.min(first.ms, Math.max((first.ms * rows) / first.rows, line));
  }
  const i = buckets.findIndex((b) => b.rows >= rows);
  const [lo, hi] = [buckets[i - 1]!, buckets[i]!];
  return lo.ms + ((rows - lo.rows) * (hi.ms - lo.ms)) / (hi.rows - lo.rows);
}

const round = (ms: number): number => Math.round(ms * 1000) / 1000;

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
