/** How far back merged busy intervals are kept, ms: an executor call longer than this may count its overlap twice. */
const HORIZON_MS = 10 * 60_000;

/** What the playground's "Images/s" is computed from: images made, and the time the engine spent making them. */
export interface Throughput {
  /** Images of requests that succeeded, since the server started. */
  images: number;
  /** Seconds during which at least one executor call ran (overlapping calls counted once), since the server started. */
  busySeconds: number;
}

/**
 * Adds up the time the engine was busy from its batch events (each: when it ended, how long it ran, what it
 * made). Images per second over busy time is the server's speed, which an idle page can still show: images
 * over wall-clock time read 0.00 a poll after a one-image run. Calls overlap (continuous batching sends each
 * request on its own), so the busy time is the length of the union of the calls' intervals.
 */
export class BusyTime {
  /** Disjoint busy intervals `[start, end]`, ms, sorted, within HORIZON_MS of the latest end. */
  #intervals: [number, number][] = [];
  #busyMs = 0;
  #images = 0;

  /** One executor call that ended at `endMs` (any monotonic clock) after `durationMs`, making `images` images. */
  record(endMs: number, durationMs: number, images: number): void {
    this.#images += images;
    const start = endMs - Math.max(0, durationMs);
    let covered = 0;
    for (const [s, e] of this.#intervals) covered += Math.max(0, Math.min(e, endMs) - Math.max(s, start));
    this.#busyMs += endMs - start - covered;
    this.#merge(start, endMs);
  }

  get totals(): Throughput {
    return { images: this.#images, busySeconds: this.#busyMs / 1000 };
  }

  #merge(start: number, end: number): void {
    const kept: [number, number][] = [];
    let s = start;
    let e = end;
    for (const iv of this.#intervals) {
      if (iv[1] < s || iv[0] > e) kept.push(iv);
      else {
        s = Math.min(s, iv[0]);
        e = Math.max(e, iv[1]);
      }
    }
    kept.push([s, e]);
    kept.sort((a, b) => a[0] - b[0]);
    const latest = kept.reduce((m, iv) => Math.max(m, iv[1]), -Infinity);
    this.#intervals = kept.filter((iv) => iv[1] >= latest - HORIZON_MS);
  }
}
