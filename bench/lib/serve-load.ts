/**
 * The load generator of bench/serve.ts: sends image requests to an OpenAI-compatible images endpoint with
 * Poisson arrivals (or all at once) under a concurrency cap, and summarises latency, throughput and the
 * server-side stage durations each response reports in its `Server-Timing` header.
 */
import { COLOR_NAMES, SHAPES } from "./shapes.js";

export interface LoadRequest {
  prompt: string;
  size: string;
  steps: number;
  n: number;
  seed: number;
  /** `guidance_scale`; absent: the model's default. */
  guidance?: number;
}

export interface LoadResult {
  ok: boolean;
  latencyMs: number;
  images: number;
  error?: string;
  /** Server-Timing stages, ms. */
  stages: Record<string, number>;
}

export interface LoadOptions {
  baseUrl: string;
  apiKey?: string;
  model?: string;
  /** Requests per second (Poisson arrivals); Infinity sends them all at once. */
  requestRate: number;
  /** Most requests in flight at once. */
  concurrency: number;
  /** Per-request deadline, ms. */
  timeoutMs: number;
  /** Seed of the arrival times. */
  seed: number;
}

export interface LoadSummary {
  durationS: number;
  completed: number;
  failed: number;
  images: number;
  requestThroughput: number;
  imageThroughput: number;
  latencyMs: { mean: number; p50: number; p95: number; p99: number; max: number };
  /** Stage → mean/p50/p95 over successful requests. */
  stages: Record<string, { mean: number; p50: number; p95: number }>;
  errors: string[];
}

/** mulberry32: a small seeded PRNG, so a run's prompts, sizes and arrival times repeat. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `count` requests drawn from the tiny-shapes vocabulary, with sizes and step counts mixed from the lists. */
export function makeRequests(count: number, sizes: string[], steps: number[], n: number, seed: number): LoadRequest[] {
  const rnd = seededRandom(seed);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rnd() * xs.length)]!;
  return Array.from({ length: count }, (_, i) => ({
    prompt: `a ${pick(COLOR_NAMES)} ${pick(SHAPES)} on a ${pick(COLOR_NAMES)} background`,
    size: pick(sizes),
    steps: pick(steps),
    n,
    seed: seed * 100_003 + i,
  }));
}

/** Linear-interpolated percentile of an ascending array (0 when empty). */
export function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return 0;
  const idx = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(idx);
  const hi = Math.ceil(idx);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (idx - lo);
}

function parseServerTiming(header: string | null): Record<string, number> {
  const out: Record<string, number> = {};
  for (const part of (header ?? "").split(",")) {
    const m = /^\s*([\w-]+)\s*;\s*dur=([\d.]+)/.exec(part);
    if (m) out[m[1]!] = Number(m[2]);
  }
  return out;
}

/** Sends one request; never throws (failures come back as `ok: false`). */
export async function sendOne(req: LoadRequest, opts: LoadOptions): Promise<LoadResult> {
  const t0 = performance.now();
  try {
    const res = await fetch(`${opts.baseUrl.replace(/\/+$/, "")}/v1/images/generations`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(opts.apiKey ? { authorization: `Bearer ${opts.apiKey}` } : {}) },
      body: JSON.stringify({
        prompt: req.prompt,
        size: req.size,
        n: req.n,
        num_inference_steps: req.steps,
        seed: req.seed,
        ...(req.guidance !== undefined ? { guidance_scale: req.guidance } : {}),
        ...(opts.model ? { model: opts.model } : {}),
      }),
      signal: AbortSignal.timeout(opts.timeoutMs),
    });
    const text = await res.text();
    const latencyMs = performance.now() - t0;
    if (!res.ok) return { ok: false, latencyMs, images: 0, error: `HTTP ${res.status}: ${text.slice(0, 200)}`, stages: {} };
    const body = JSON.parse(text) as { data?: unknown[] };
    return { ok: true, latencyMs, images: body.data?.length ?? 0, stages: parseServerTiming(res.headers.get("server-timing")) };
  } catch (err) {
    return { ok: false, latencyMs: performance.now() - t0, images: 0, error: (err as Error).message, stages: {} };
  }
}

/** Runs the whole load: arrivals at `requestRate`, at most `concurrency` in flight. Returns every result, in request order. */
export async function runLoad(requests: LoadRequest[], opts: LoadOptions): Promise<{ results: LoadResult[]; durationS: number }> {
  const rnd = seededRandom(opts.seed ^ 0x9e3779b9);
  const results: LoadResult[] = new Array(requests.length);
  let active = 0;
  const slotFreed: (() => void)[] = [];
  const acquire = async () => {
    while (active >= opts.concurrency) await new Promise<void>((r) => slotFreed.push(r));
    active++;
  };
  const release = () => {
    active--;
    slotFreed.shift()?.();
  };
  const t0 = performance.now();
  const tasks: Promise<void>[] = [];
  for (const [i, req] of requests.entries()) {
    if (i > 0 && Number.isFinite(opts.requestRate)) {
      // Exponential inter-arrival times: a Poisson process at `requestRate` requests per second.
      const gapMs = (-Math.log(1 - rnd()) / opts.requestRate) * 1000;
      await new Promise((r) => setTimeout(r, gapMs));
    }
    await acquire();
    tasks.push(
      sendOne(req, opts).then((r) => {
        results[i] = r;
        release();
      }),
    );
  }
  await Promise.all(tasks);
  return { results, durationS: (performance.now() - t0) / 1000 };
}

export function summarise(results: LoadResult[], durationS: number): LoadSummary {
  const ok = results.filter((r) => r.ok);
  const lat = ok.map((r) => r.latencyMs).sort((a, b) => a - b);
  const images = ok.reduce((a, r) => a + r.images, 0);
  const stageNames = [...new Set(ok.flatMap((r) => Object.keys(r.stages)))];
  const stages: LoadSummary["stages"] = {};
  for (const s of stageNames) {
    const v = ok.map((r) => r.stages[s]).filter((x): x is number => typeof x === "number").sort((a, b) => a - b);
    stages[s] = { mean: v.reduce((a, b) => a + b, 0) / (v.length || 1), p50: percentile(v, 50), p95: percentile(v, 95) };
  }
  return {
    durationS,
    completed: ok.length,
    failed: results.length - ok.length,
    images,
    requestThroughput: ok.length / durationS,
    imageThroughput: images / durationS,
    latencyMs: {
      mean: lat.reduce((a, b) => a + b, 0) / (lat.length || 1),
      p50: percentile(lat, 50),
      p95: percentile(lat, 95),
      p99: percentile(lat, 99),
      max: lat[lat.length - 1] ?? 0,
    },
    stages,
    errors: [...new Set(results.filter((r) => !r.ok).map((r) => r.error ?? "unknown"))].slice(0, 5),
  };
}

/** The report, in the layout of vLLM's serving benchmarks. */
export function formatSummary(title: string, s: LoadSummary): string {
  const row = (k: string, v: string | number) => `${k.padEnd(40)}${typeof v === "number" ? v.toFixed(2) : v}`;
  const lines = [
    `${"=".repeat(12)} ${title} ${"=".repeat(Math.max(4, 36 - title.length))}`,
    row("Successful requests:", String(s.completed)),
    row("Failed requests:", String(s.failed)),
    row("Benchmark duration (s):", s.durationS),
    row("Images generated:", String(s.images)),
    row("Request throughput (req/s):", s.requestThroughput),
    row("Image throughput (images/s):", s.imageThroughput),
    `${"-".repeat(18)} Latency (ms) ${"-".repeat(18)}`,
    row("Mean:", s.latencyMs.mean),
    row("P50:", s.latencyMs.p50),
    row("P95:", s.latencyMs.p95),
    row("P99:", s.latencyMs.p99),
    row("Max:", s.latencyMs.max),
  ];
  if (Object.keys(s.stages).length) {
    lines.push(`${"-".repeat(6)} Server-side stages (ms): mean / p50 / p95 ${"-".repeat(3)}`);
    for (const [name, v] of Object.entries(s.stages)) lines.push(row(`${name}:`, `${v.mean.toFixed(1)} / ${v.p50.toFixed(1)} / ${v.p95.toFixed(1)}`));
  }
  for (const e of s.errors) lines.push(`error: ${e}`);
  return lines.join("\n");
}
