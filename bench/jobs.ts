/**
 * The predictions API under a burst (issue 23): starts `omni-diffusion serve` on the shipped model with a fresh
 * --data-dir, submits --n predictions as fast as --concurrency clients can (`POST /v1/predictions`, each
 * answered as soon as it is stored), waits until all are final, and prints how many succeeded, submit latency
 * p50/p99, and images per second from the first submit to the last completion. Then it runs the same workload
 * through the synchronous `POST /v1/images/generations` on the same server (--concurrency clients, each holding
 * its request until the image is back) and prints the throughput ratio jobs/sync (issue 23's goal: >= 0.95).
 * Printed, not asserted. With --webhooks on (the default) every prediction asks for its `start` and `completed`
 * webhooks at a real receiver in this process (the server runs with --allow-private-webhooks): it verifies each
 * signature, dedupes by `webhook-id`, and the table says how many predictions got each event exactly once.
 *
 *   npx tsx bench/jobs.ts [--n 1000] [--steps 4] [--concurrency 64] [--workers 1] [--threads 2] [--max-batch 8] [--order jobs,sync,sync,jobs] [--webhooks on|off]
 *
 * The server is warmed up first; --order runs each kind as often as it is listed (mirrored, so a machine whose
 * speed drifts hits both alike) and the ratio is of the means. The defaults take a few minutes on 2 cores.
 */
import { benchArgs } from "./lib/bench-args.js";
import { startCliServer, stopCliServer } from "./lib/cli-server.js";
import { intFlag, percentile, table } from "./lib/stats.js";
import { WebhookCounter, tally } from "./lib/webhook-counter.js";

const args = benchArgs(import.meta.url, {
  n: { type: "string", default: "1000" },
  steps: { type: "string", default: "4" },
  concurrency: { type: "string", default: "64" },
  workers: { type: "string", default: "1" },
  threads: { type: "string", default: "2" },
  "max-batch": { type: "string", default: "8" },
  order: { type: "string", default: "jobs,sync,sync,jobs" },
  webhooks: { type: "string", default: "on" },
});
const N = intFlag("n", args.n, 1);
const STEPS = intFlag("steps", args.steps, 1);
const C = intFlag("concurrency", args.concurrency, 1);
const order = args.order.split(",").map((s) => s.trim());
if (order.some((o) => o !== "jobs" && o !== "sync")) {
  console.error(`--order must list jobs and sync, got ${args.order} (see --help)`);
  process.exit(2);
}
if (args.webhooks !== "on" && args.webhooks !== "off") {
  console.error(`--webhooks must be on or off, got ${args.webhooks} (see --help)`);
  process.exit(2);
}
/** How long to wait for the last `completed` webhooks once every prediction is final, ms. */
const WEBHOOK_GRACE_MS = 120_000;
const receiver = args.webhooks === "on" ? new WebhookCounter() : null;
/** Predictions of all jobs runs so far: each should end with one `completed` delivery. */
let expectedCompleted = 0;
const input = (i: number) => ({ prompt: "a red circle on a blue background", num_inference_steps: STEPS, seed: i });

/** Runs `job(i)` for i in [0, n) on `c` concurrent lanes. */
async function lanes(n: number, c: number, job: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(c, n) }, async () => {
    while (next < n) await job(next++);
  }));
}

interface Prediction {
  id: string;
  status: string;
  created_at: string;
  completed_at: string | null;
  metrics: { image_count?: number };
}

interface JobsRun {
  imagesPerS: number;
  succeeded: number;
  failed: number;
  submitP50: number;
  submitP99: number;
  refused: number;
  /** Per event, predictions with exactly one distinct delivery, none, more than one (null: webhooks off). */
  completed: ReturnType<typeof tally> | null;
  start: ReturnType<typeof tally> | null;
}

async function runJobs(url: string): Promise<JobsRun> {
  const submitMs: number[] = [];
  const ids: string[] = [];
  const hook = receiver ? { webhook: receiver.url, webhook_events_filter: ["start", "completed"] } : {};
  let refused = 0;
  const t0 = performance.now();
  await lanes(N, C, async (i) => {
    for (;;) {
      const s = performance.now();
      const res = await fetch(`${url}/v1/predictions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ input: input(i), ...hook }) });
      if (res.status === 429) {
        refused++;
        await new Promise((r) => setTimeout(r, 1000 * Number(res.headers.get("retry-after") ?? 1)));
        continue;
      }
      submitMs.push(performance.now() - s);
      if (res.status !== 201) throw new Error(`POST /v1/predictions: ${res.status} ${await res.text()}`);
      ids.push(((await res.json()) as Prediction).id);
      return;
    }
  });
  const submitted = performance.now() - t0;
  console.log(`jobs: ${N} submitted in ${(submitted / 1000).toFixed(1)} s; waiting for them to finish`);
  // The runner starts predictions oldest first, so the last one submitted ends about last: wait on its stream
  // (one idle connection) rather than polling a list of N predictions, which would load the server it measures.
  const lastId = ids[ids.length - 1]!;
  const last0 = (await (await fetch(`${url}/v1/predictions/${lastId}`)).json()) as { urls: { stream: string } };
  await (await fetch(last0.urls.stream)).text();
  const mine = new Set(ids);
  const final = new Map<string, Prediction>();
  while (final.size < ids.length) {
    let next: string | null = `${url}/v1/predictions`;
    while (next) {
      const page = (await (await fetch(next)).json()) as { next: string | null; results: Prediction[] };
      for (const p of page.results) if (p.completed_at && mine.has(p.id)) final.set(p.id, p);
      next = page.next;
    }
    if (final.size < ids.length) await new Promise((r) => setTimeout(r, 1000));
  }
  // Delivery may trail the last completion a little: wait for every prediction's `completed` (bounded).
  expectedCompleted += ids.length;
  await receiver?.completedFor(expectedCompleted, WEBHOOK_GRACE_MS);
  const done = [...final.values()];
  const first = Math.min(...done.map((p) => Date.parse(p.created_at)));
  const last = Math.max(...done.map((p) => Date.parse(p.completed_at!)));
  const images = done.reduce((n, p) => n + (p.metrics.image_count ?? 0), 0);
  return {
    imagesPerS: images / ((last - first) / 1000),
    succeeded: done.filter((p) => p.status === "succeeded").length,
    failed: done.filter((p) => p.status !== "succeeded").length,
    submitP50: percentile(submitMs, 50),
    submitP99: percentile(submitMs, 99),
    refused,
    completed: receiver ? tally(ids, receiver.counts.completed) : null,
    start: receiver ? tally(ids, receiver.counts.start) : null,
  };
}

async function runSync(url: string): Promise<{ imagesPerS: number; ok: number }> {
  let ok = 0;
  const t0 = performance.now();
  await lanes(N, C, async (i) => {
    const res = await fetch(`${url}/v1/images/generations`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(input(i)) });
    if (res.status === 200) ok++;
    await res.arrayBuffer();
  });
  return { imagesPerS: ok / ((performance.now() - t0) / 1000), ok };
}

const server = await startCliServer(["--workers", args.workers, "--threads", args.threads, "--max-batch", args["max-batch"], "--log-level", "info", "--no-ui", "--no-a1111", ...(receiver ? ["--allow-private-webhooks"] : [])]);
try {
  if (receiver) await receiver.start(((await (await fetch(`${server.url}/v1/webhooks/default/secret`)).json()) as { key: string }).key);
  const rows: (string | number)[][] = [["run", "ok", "failed", "images/s", "submit p50 ms", "submit p99 ms", "429s", "completed hooks once/missing/dup", "start hooks once/missing/dup"]];
  const hooks = (t: ReturnType<typeof tally> | null) => (t ? `${t.once}/${t.missing}/${t.more}` : "-");
  const rates: Record<string, number[]> = { jobs: [], sync: [] };
  // Warm up first (JIT, onnxruntime's first calls), so neither side pays for a cold server.
  await lanes(2 * C, C, async (i) => void (await (await fetch(`${server.url}/v1/images/generations`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(input(i)) })).arrayBuffer()));
  for (const kind of order) {
    if (kind === "jobs") {
      const r = await runJobs(server.url);
      rates.jobs!.push(r.imagesPerS);
      rows.push(["predictions", r.succeeded, r.failed, r.imagesPerS.toFixed(1), r.submitP50.toFixed(1), r.submitP99.toFixed(1), r.refused, hooks(r.completed), hooks(r.start)]);
    } else {
      const r = await runSync(server.url);
      rates.sync!.push(r.imagesPerS);
      rows.push(["images/generations", r.ok, N - r.ok, r.imagesPerS.toFixed(1), "-", "-", "-", "-", "-"]);
    }
  }
  console.log(`\n${N} requests, ${STEPS} steps, 32x32, --concurrency ${C}, --workers ${args.workers}, --max-batch ${args["max-batch"]}`);
  console.log(table(rows));
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  if (rates.jobs!.length && rates.sync!.length) console.log(`\nthroughput ratio predictions / synchronous (means): ${(mean(rates.jobs!) / mean(rates.sync!)).toFixed(3)} (goal >= 0.95)`);
  if (receiver) {
    const c = receiver.counts;
    console.log(`webhooks: ${c.requests} requests received, ${c.distinct} distinct webhook-ids, ${c.requests - c.distinct - c.badSignatures} duplicates (retries) dropped, ${c.badSignatures} bad signatures`);
  }
} finally {
  await stopCliServer(server.child);
  await receiver?.close();
}
