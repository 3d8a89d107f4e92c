import { Writable } from "node:stream";
import { setTimeout as delay } from "node:timers/promises";
import { PNG } from "pngjs";

/** Polls `cond` every 10 ms until it holds; throws naming `what` after `ms`. A latch on state we cannot subscribe to. */
export async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms}ms waiting for ${what}`);
    await delay(10);
  }
}

/** Decodes a base64 PNG (pngjs). */
export function decodeB64Png(b64: string): PNG {
  return PNG.sync.read(Buffer.from(b64, "base64"));
}

/** Largest per-channel difference between two RGBA buffers of the same size. */
export function maxPixelDiff(a: PNG, b: PNG): number {
  let max = 0;
  for (let i = 0; i < a.data.length; i++) max = Math.max(max, Math.abs(a.data[i]! - b.data[i]!));
  return max;
}

/** A pino destination that keeps every JSON log line, with a latch for the first line matching a predicate. */
export class LogCapture {
  readonly lines: Record<string, unknown>[] = [];
  #waiters: { pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] = [];
  readonly stream = new Writable({
    write: (chunk: Buffer, _enc, cb) => {
      for (const text of chunk.toString("utf8").split("\n")) {
        if (!text.trim()) continue;
        const line = JSON.parse(text) as Record<string, unknown>;
        this.lines.push(line);
        for (const w of [...this.#waiters]) {
          if (!w.pred(line)) continue;
          this.#waiters.splice(this.#waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
      cb();
    },
  });

  /** Resolves with the first line (already logged or to come) for which `pred` holds; rejects after `ms`. */
  waitFor(pred: (l: Record<string, unknown>) => boolean, what: string, ms = 30_000): Promise<Record<string, unknown>> {
    const seen = this.lines.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no log line ${what} within ${ms}ms`)), ms);
      this.#waiters.push({ pred, resolve: (l) => (clearTimeout(t), resolve(l)) });
    });
  }
}

/** Parses Prometheus text into `name{labels}` → value. */
export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const i = line.lastIndexOf(" ");
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}
