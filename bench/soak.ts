/**
 * Soak test of `omni-diffusion serve`: N valid requests at concurrency C, with an abort storm mixed in
 * (every k-th slot also sends a request the client abandons: a stream dropped after its first event, or a
 * plain request cancelled after a few ms). Per quarter of the valid requests it prints the RSS of the server
 * process and of each worker process, and p50/p95 latency; at the end the server's in-flight gauges
 * (`omni_queue_depth`, `omni_requests_running`), which must be back to 0 (exit 1 otherwise, or on a failure).
 *
 *   npx tsx bench/soak.ts --n 400 --concurrency 16 --abort-every 3 [--workers 1] [--steps 2]
 */
import { setTimeout as delay } from "node:timers/promises";
import { benchArgs } from "./lib/bench-args.js";
import { startCliServer, stopCliServer } from "./lib/cli-server.js";
import { makeRequests, sendOne, type LoadRequest } from "./lib/serve-load.js";
import { rssLine } from "./lib/rss.js";
import { intFlag, percentile, table } from "./lib/stats.js";

const args = benchArgs(import.meta.url, {
  n: { type: "string", default: "400" },
  concurrency: { type: "string", default: "16" },
  "abort-every": { type: "string", default: "3" },
  workers: { type: "string", default: "1" },
  steps: { type: "string", default: "2" },
});
const N = intFlag("n", args.n, 4);
const C = intFlag("concurrency", args.concurrency, 1);
const ABORT_EVERY = intFlag("abort-every", args["abort-every"], 1);
const STEPS = intFlag("steps", args.steps, 1);

const server = await startCliServer(["--workers", String(intFlag("workers", args.workers, 1)), "--threads", "1", "--log-level", "info", "--max-queue", String(4 * C + 16)]);
const base = server.url;
const pid = server.child.pid!;

/** A request the client gives up on: a stream dropped after its first event, or a plain one cancelled after `ms`. */
async function abandon(req: LoadRequest, i: number): Promise<void> {
  const ac = new AbortController();
  const stream = i % 2 === 0;
  const timer = stream ? undefined : setTimeout(() => ac.abort(), 5 + (i % 20));
  try {
    const res = await fetch(`${base}/v1/images/generations`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: req.prompt, size: req.size, num_inference_steps: Math.max(STEPS, 8), seed: req.seed, ...(stream ? { stream: true, partial_images: 2 } : {}) }),
      signal: ac.signal,
    });
    if (stream) await res.body?.getReader().read();
    ac.abort();
  } catch {
    // aborted: the point
  } finally {
    clearTimeout(timer);
    ac.abort();
  }
}

const requests = makeRequests(N, ["32x32"], [STEPS], 1, 7);
const latencies: number[][] = [[], [], [], []];
const quarterRows: (string | number)[][] = [["quarter", "valid done", "p50 ms", "p95 ms", "RSS"]];
let next = 0;
let done = 0;
let failed = 0;
let aborted = 0;
const failures: string[] = [];
const t0 = performance.now();
console.log(`soak: ${N} valid requests, concurrency ${C}, one abandoned request every ${ABORT_EVERY}; ${rssLine("serve", pid)}`);

async function lane(): Promise<void> {
  while (next < N) {
    const i = next++;
    const storm = i % ABORT_EVERY === 0 ? abandon(requests[i]!, i).then(() => void aborted++) : Promise.resolve();
    const r = await sendOne(requests[i]!, { baseUrl: base, timeoutMs: 600_000 } as Parameters<typeof sendOne>[1]);
    await storm;
    const q = Math.min(3, Math.floor((done * 4) / N));
    done++;
    if (r.ok) latencies[q]!.push(r.latencyMs);
    else {
      failed++;
      if (failures.length < 5) failures.push(r.error ?? "?");
    }
    if (done === Math.ceil(((q + 1) * N) / 4)) {
      const sorted = [...latencies[q]!].sort((a, b) => a - b);
      quarterRows.push([`Q${q + 1}`, done, percentile(sorted, 50).toFixed(0), percentile(sorted, 95).toFixed(0), rssLine("serve", pid)]);
    }
  }
}

await Promise.all(Array.from({ length: C }, lane));
const secs = (performance.now() - t0) / 1000;

/** The in-flight gauges, polled until they are 0 (abandoned requests stop between steps) or 30 s pass. */
async function inFlight(): Promise<Record<string, number>> {
  const until = Date.now() + 30_000;
  for (;;) {
    const text = await (await fetch(`${base}/metrics`)).text();
    const g: Record<string, number> = {};
    for (const name of ["omni_queue_depth", "omni_requests_running"]) g[name] = Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "m").exec(text)?.[1] ?? Number.NaN);
    if (Object.values(g).every((v) => v === 0) || Date.now() > until) return g;
    await delay(100);
  }
}

const gauges = await inFlight();
console.log(table(quarterRows));
console.log(`${N} valid requests in ${secs.toFixed(1)} s (${(N / secs).toFixed(1)} req/s), ${failed} failed, ${aborted} abandoned`);
for (const f of failures) console.log(`  failure: ${f}`);
console.log(`in flight at the end: ${JSON.stringify(gauges)}`);
await stopCliServer(server.child);
if (failed || Object.values(gauges).some((v) => v !== 0)) process.exitCode = 1;
