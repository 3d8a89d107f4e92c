/**
 * Decoding untrusted PNGs, measured on real `omni-diffusion serve` and `worker` processes (issue 21 items 1,
 * 2 and 7), on the shipped model:
 *
 *   1. peak RSS (VmHWM, reset before each case) of serve and of the worker for a decompression bomb of
 *      --bomb-mib MiB (a 32x32 interlaced header over ~1,000x that in zeros) sent to POST /v1/images/edits,
 *      A1111 img2img and the worker's POST /v1/diffusion/generate, with each answer's status;
 *   2. /health latency (polled one after another, from a process of its own) while --uploads maximal uploads
 *      decode at once: serve runs with --max-size 1024, so the upload cap is 2048x2048 and each upload is a
 *      2048x2048 RGBA PNG; beside it, serve's own event-loop delay maximum (prom-client's, from /metrics: a
 *      /health answer slower than that waited for a core, not for serve's event loop), serve's main-thread
 *      CPU ms, and its GC counts and pause totals over the spike (prom-client's nodejs_gc_duration_seconds;
 *      the longest pause too when serve runs with --trace-gc). On a busy machine the counts and the CPU are
 *      the steadier A/B measures; the maxima need a quiet one;
 *   3. serve's RSS before, at the peak of, and --idle-ms after each of --spikes such spikes.
 *
 *   npx tsx bench/decode-bench.ts [--root DIR] [--uploads 8] [--bomb-mib 2] [--spikes 2] [--idle-ms 5000]
 *     [--part all|bombs|uploads] [--node-options "..."] [--b-root DIR] [--b-node-options "..."]
 *     [--probe /health] [--probe-every-ms 0] [--serve-log FILE] [--dist] [--client-nice 19]
 *
 * --root runs the CLI of another checkout (say an older commit unpacked with `git archive`) for before/after
 * numbers; its node_modules must be installed (a symlink to this one's works). --node-options starts serve's
 * node with those options, given with "=" (`--node-options="--cpu-prof --cpu-prof-dir=/tmp/prof"`, `--trace-gc`).
 * --b-root and/or --b-node-options start a second serve, B, beside A (--root, --node-options) for an A/B in
 * one run: step 2's spikes alternate A, B, A, B (--spikes each), and a summary gives each side's medians.
 * --probe PATH polls another path in /health's place (/v1/models: no round trip to the workers), and
 * --probe-every-ms N starts a poll at most every N ms (default 0: back to back, which costs serve ~2,000
 * logged requests a second).
 * --serve-log FILE appends serve's stdout during each spike to FILE.A (FILE.B): its --trace-gc lines, say.
 * --dist runs each side's built CLI (`bin/omni-diffusion.js`, dist/) as an installed package runs, instead of
 * src/ under tsx (whose loader compiles the decode thread's module when a spike starts one).
 * --client-nice N runs the bench's own thread, which sends the uploads, at nice N (default 19; 0 turns it off)
 * while /health is polled: on a 2-core machine the sending client otherwise takes a core from serve, where in
 * production clients are other machines. The poller (a process of its own) keeps the normal priority, as a
 * kubelet's probe does.
 * Linux only (/proc).
 */
import { fork, spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { setPriority, tmpdir } from "node:os";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { PNG } from "pngjs";
import { bombPng } from "../test/helpers/png-bombs.js";
import { benchArgs } from "./lib/bench-args.js";
import { intFlag } from "./lib/stats.js";

const args = benchArgs(import.meta.url, {
  root: { type: "string", default: fileURLToPath(new URL("..", import.meta.url)) },
  uploads: { type: "string", default: "8" },
  "bomb-mib": { type: "string", default: "2" },
  spikes: { type: "string", default: "2" },
  "idle-ms": { type: "string", default: "5000" },
  part: { type: "string", default: "all" },
  "node-options": { type: "string" },
  "b-root": { type: "string" },
  "b-node-options": { type: "string" },
  "serve-log": { type: "string" },
  probe: { type: "string", default: "/health" },
  "probe-every-ms": { type: "string", default: "0" },
  dist: { type: "boolean", default: false },
  "client-nice": { type: "string", default: "19" },
});
const ROOT = resolve(args.root);
const UPLOADS = intFlag("uploads", args.uploads, 1);
const BOMB_MIB = intFlag("bomb-mib", args["bomb-mib"], 1);
const SPIKES = intFlag("spikes", args.spikes, 1);
const IDLE_MS = intFlag("idle-ms", args["idle-ms"], 0);
const PART = args.part;
const PROBE_EVERY_MS = intFlag("probe-every-ms", args["probe-every-ms"], 0);
const CLIENT_NICE = intFlag("client-nice", args["client-nice"], 0);
if (CLIENT_NICE > 19) {
  console.error(`--client-nice must be 0 to 19, got ${CLIENT_NICE} (see --help)`);
  process.exit(2);
}
if (PART !== "all" && PART !== "bombs" && PART !== "uploads") {
  console.error(`--part must be all, bombs or uploads, got ${PART} (see --help)`);
  process.exit(2);
}
/** A --trace-gc line's pause: "... MB, 1.2 / 0.0 ms ..." (the first number is the pause). */
const TRACE_GC = /^\[\d+:(0x[0-9a-f]+)\][^\n]*?(?:Scavenge|Mark-Compact|Mark-sweep)[^\n]*? MB, ([0-9.]+) \/ [0-9.]+ ms/gm;
const MiB = 1024 * 1024;
const COMMON = ["--workers", "1", "--threads", "1"];

/** A fresh data dir for one serve, removed when the bench exits. */
const dataDirs: string[] = [];
process.on("exit", () => dataDirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
function dataDir(): string {
  const d = mkdtempSync(resolve(tmpdir(), "omni-bench-serve-"));
  dataDirs.push(d);
  return d;
}

/**
 * Spawns the CLI of `side.root` (node started with `side.nodeOptions`) and resolves once `ready(stdout so far)`
 * returns a value; `log` keeps the stdout lines since the caller last emptied it (--trace-gc lines among them).
 */
async function startCli<T>(cmd: string[], ready: (out: string) => T | undefined, side: { root: string; nodeOptions: string[] } = { root: ROOT, nodeOptions: [] }): Promise<{ child: ChildProcess; value: T; log: string[]; out: string }> {
  const entry = args.dist ? [resolve(side.root, "bin/omni-diffusion.js")] : ["--import", "tsx", resolve(side.root, "src/cli/main.ts")];
  const child = spawn(process.execPath, [...side.nodeOptions, ...entry, ...cmd], {
    cwd: side.root,
    stdio: ["ignore", "pipe", "inherit"],
    // Each serve its own predictions store (an env var: an older checkout on the B side has no --data-dir flag).
    env: { ...process.env, OMNI_DIFFUSION_DATA_DIR: dataDir() },
  });
  child.stdout!.setEncoding("utf8");
  let out = "";
  const log: string[] = [];
  const value = await new Promise<T>((res, rej) => {
    setTimeout(() => rej(new Error(`${cmd[0]} was not ready within 180 s`)), 180_000).unref();
    child.stdout!.on("data", (d: string) => {
      out = (out + d).slice(-8192);
      const v = ready(out);
      if (v !== undefined) res(v);
    });
    child.once("exit", (code) => rej(new Error(`${cmd[0]} exited with ${code} before it was ready`)));
  });
  child.stdout!.on("data", (d: string) => {
    if (log.length < 100_000) log.push(d);
  });
  return { child, value, log, out };
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  child.kill("SIGTERM");
  const t = setTimeout(() => child.kill("SIGKILL"), 30_000);
  await exited;
  clearTimeout(t);
}

/** VmRSS and VmHWM of `pid`, MiB. */
function mem(pid: number): { rss: number; hwm: number } {
  const s = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(s)?.[1] ?? Number.NaN) / 1024;
  return { rss: kb("VmRSS"), hwm: kb("VmHWM") };
}

/** CPU ms (user + system) serve's main thread has used: /proc/<pid>/task/<pid>/stat, 10 ms ticks. */
function mainThreadCpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/task/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** Resets the peak (Linux: writing 5 to clear_refs sets VmHWM to the current RSS). */
function resetPeak(pid: number): void {
  writeFileSync(`/proc/${pid}/clear_refs`, "5");
}

const f1 = (n: number) => n.toFixed(1);

async function editUpload(url: string, png: Buffer, size = "32x32"): Promise<number> {
  const form = new FormData();
  form.set("prompt", "a red circle on a blue background");
  form.set("size", size);
  form.set("num_inference_steps", "1");
  form.set("image", new Blob([png], { type: "image/png" }), "in.png");
  const res = await fetch(`${url}/v1/images/edits`, { method: "POST", body: form });
  await res.arrayBuffer();
  return res.status;
}

async function postJson(url: string, body: unknown): Promise<number> {
  const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  await res.arrayBuffer();
  return res.status;
}

/** A 2048x2048 RGBA gradient: the largest upload serve --max-size 1024 accepts. */
function maximalPng(side: number): Buffer {
  const png = new PNG({ width: side, height: side });
  for (let y = 0, i = 0; y < side; y++) {
    for (let x = 0; x < side; x++, i += 4) {
      png.data[i] = x & 255;
      png.data[i + 1] = y & 255;
      png.data[i + 2] = (x ^ y) & 255;
      png.data[i + 3] = 255;
    }
  }
  return PNG.sync.write(png);
}

const serveReady = (out: string) => /"url":"([^"]+)","model"/.exec(out)?.[1];
const workerReady = (out: string) => /omni-diffusion worker ready: .*http=(\S+)/.exec(out)?.[1];

console.log(`bench/decode-bench: CLI of ${ROOT}`);

// 1. Bombs.
if (PART !== "uploads") {
  const bomb = bombPng(BOMB_MIB * MiB);
  console.log(`\n1. a ${f1(bomb.length / MiB)} MiB bomb (32x32 interlaced header; inflates to ${BOMB_MIB * 1024} MiB unbounded)`);
  const serve = await startCli(["serve", "--port", "0", "--log-level", "info", ...COMMON], serveReady);
  const pid = serve.child.pid!;
  try {
    await editUpload(serve.value, maximalPng(32)); // warm: routes, multipart, the decoder
    for (const [name, send] of [
      ["serve POST /v1/images/edits", () => editUpload(serve.value, bomb)],
      ["serve A1111 img2img", () => postJson(`${serve.value}/sdapi/v1/img2img`, { prompt: "a red circle", steps: 1, init_images: [bomb.toString("base64")] })],
    ] as const) {
      const before = mem(pid);
      resetPeak(pid);
      await loopLagMaxMs(serve.value); // prom-client resets its event-loop histogram at each scrape
      const status = await send();
      const after = mem(pid);
      console.log(`  ${name}: status ${status}; RSS ${f1(before.rss)} MiB before, peak ${f1(after.hwm)} MiB (+${f1(after.hwm - before.rss)}), ${f1(after.rss)} MiB after`);
    }
  } finally {
    await stop(serve.child);
  }
  const worker = await startCli(["worker", "--http-port", "0", "--no-log", ...COMMON], workerReady);
  const wpid = worker.child.pid!;
  try {
    const url = `${worker.value}/v1/diffusion/generate`;
    await postJson(url, { requests: [{ prompt: "a red circle", num_inference_steps: 1, image: maximalPng(32).toString("base64") }] });
    const before = mem(wpid);
    resetPeak(wpid);
    const status = await postJson(url, { requests: [{ prompt: "a red circle", num_inference_steps: 1, image: bomb.toString("base64") }] });
    const after = mem(wpid);
    console.log(`  worker POST /v1/diffusion/generate: status ${status}; RSS ${f1(before.rss)} MiB before, peak ${f1(after.hwm)} MiB (+${f1(after.hwm - before.rss)}), ${f1(after.rss)} MiB after`);
  } finally {
    await stop(worker.child);
  }
}

// 2 and 3. Maximal uploads: /health while they decode, serve's event loop and GC, RSS over spikes.
if (PART !== "bombs") {
  const big = maximalPng(2048);
  console.log(`\n2. /health while ${UPLOADS} maximal uploads decode (2048x2048 RGBA, ${f1(big.length / MiB)} MiB each; serve --max-size 1024)`);
  const sides: Side[] = [{ name: "A", root: ROOT, nodeOptions: splitOpts(args["node-options"]) }];
  if (args["b-root"] !== undefined || args["b-node-options"] !== undefined) {
    sides.push({ name: "B", root: resolve(args["b-root"] ?? ROOT), nodeOptions: splitOpts(args["b-node-options"]) });
  }
  const started: Started[] = [];
  try {
    for (const side of sides) {
      const serve = await startCli(["serve", "--port", "0", "--log-level", "info", "--max-size", "1024", ...COMMON], serveReady, side);
      const poller = fork(fileURLToPath(new URL("./lib/health-poller.mjs", import.meta.url)), [serve.value, args.probe, String(PROBE_EVERY_MS)]);
      started.push({ side, serve, poller, mainIsolate: /^\[\d+:(0x[0-9a-f]+)\]/m.exec(serve.out)?.[1] });
      console.log(`  ${side.name}: ${side.root} ${side.nodeOptions.join(" ")}`.trimEnd());
    }
    for (const s of started) {
      await editUpload(s.serve.value, maximalPng(32));
      await editUpload(s.serve.value, big); // warm: the decode pool's first thread and its module load
      const idle = await pollHealth(s, async () => {
        for (let i = 0; i < 20; i++) await fetch(`${s.serve.value}/health`).then((r) => r.arrayBuffer());
      });
      console.log(`  ${s.side.name} idle: /health p50 ${f1(pct(idle, 50))} ms, max ${f1(Math.max(...idle))} ms`);
    }
    // Spikes alternate between the sides (A, B, A, B, ...) so both see the same machine noise.
    const rows = new Map<string, SpikeRow[]>(started.map((s) => [s.side.name, []]));
    if (CLIENT_NICE > 0) {
      // This thread only (Linux: a thread's nice value is its own); serve and the pollers started before it.
      setPriority(CLIENT_NICE);
      console.log(`  the uploads are sent at nice ${CLIENT_NICE} (--client-nice); the poller runs at nice 0`);
    }
    for (let i = 1; i <= SPIKES; i++) {
      for (const s of started) {
        const row = await spike(s, big);
        rows.get(s.side.name)!.push(row);
        console.log(
          `  ${s.side.name} spike ${i}: ${UPLOADS} uploads in ${f1(row.wall / 1000)} s (statuses ${row.statuses}); ${args.probe} x${row.lat.length}: p50 ${f1(pct(row.lat, 50))} ms, p99 ${f1(pct(row.lat, 99))} ms, max ${f1(Math.max(...row.lat))} ms; serve's event-loop delay max ${f1(row.lagMax)} ms, main-thread CPU ${row.cpu} ms; GC ${gcLine(row.gc)}`,
        );
        if (args["serve-log"]) appendFileSync(`${args["serve-log"]}.${s.side.name}`, `--- spike ${i}\n${s.serve.log.join("")}`);
        console.log(`           serve RSS ${f1(row.rssBefore)} MiB before, peak ${f1(row.peak)} MiB, ${f1(row.rssAfter)} MiB ${IDLE_MS} ms after`);
      }
    }
    if (started.length > 1 || SPIKES > 1) {
      console.log("\n  summary (median over spikes of each spike's value):");
      for (const [name, rs] of rows) {
        const all = rs.flatMap((r) => r.lat);
        console.log(
          `  ${name}: all ${all.length} ${args.probe} answers: p50 ${f1(pct(all, 50))} ms, p99 ${f1(pct(all, 99))} ms, p99.9 ${f1(pct(all, 99.9))} ms, max ${f1(Math.max(...all))} ms; over 50 ms: ${all.filter((ms) => ms > 50).length}`,
        );
        const med = (f: (r: SpikeRow) => number) => f1(pct(rs.map(f), 50));
        console.log(
          `  ${name}: ${args.probe} max ${med((r) => Math.max(...r.lat))} ms, p99 ${med((r) => pct(r.lat, 99))} ms; event-loop delay max ${med((r) => r.lagMax)} ms; main-thread CPU ${med((r) => r.cpu)} ms; GC total ${med((r) => r.gc.total)} ms (major ${med((r) => r.gc.majors)}x ${med((r) => r.gc.major)} ms), longest pause ${med((r) => r.gc.longest)} ms; uploads ${med((r) => r.wall / 1000)} s`,
        );
      }
    }
  } finally {
    for (const s of started) {
      s.poller.send("exit");
      await stop(s.serve.child);
    }
  }
}

interface Side {
  name: string;
  root: string;
  nodeOptions: string[];
}

interface Started {
  side: Side;
  serve: { child: ChildProcess; value: string; log: string[]; out: string };
  poller: ChildProcess;
  /** serve's main-thread isolate in --trace-gc lines. */
  mainIsolate?: string;
}

interface GcTotals {
  /** Pause ms by kind, from prom-client's nodejs_gc_duration_seconds_sum. */
  minor: number;
  major: number;
  total: number;
  /** How many collections: scavenges (minor) and mark-compacts (major, incremental included). */
  minors: number;
  majors: number;
  /** Longest single pause, ms: only when serve runs with --trace-gc (NaN otherwise). */
  longest: number;
}

interface SpikeRow {
  wall: number;
  statuses: string;
  lat: number[];
  lagMax: number;
  gc: GcTotals;
  /** serve's main-thread CPU over the spike, ms (all the requests it served, the probes included). */
  cpu: number;
  rssBefore: number;
  peak: number;
  rssAfter: number;
}

function splitOpts(s: string | undefined): string[] {
  return (s ?? "").split(/\s+/).filter(Boolean);
}

/** Runs `work` while the side's poller polls /health; the poller's latencies, ms. */
async function pollHealth(s: Started, work: () => Promise<void>): Promise<number[]> {
  const reply = once(s.poller, "message");
  s.poller.send("start");
  await work();
  s.poller.send("stop");
  return (await reply)[0] as number[];
}

/** One spike: UPLOADS maximal uploads at once, /health polled throughout from the poller process. */
async function spike(s: Started, big: Buffer): Promise<SpikeRow> {
  const pid = s.serve.child.pid!;
  const rssBefore = mem(pid).rss;
  resetPeak(pid);
  const gc0 = await gcSums(s.serve.value);
  const cpu0 = mainThreadCpuMs(pid);
  await loopLagMaxMs(s.serve.value); // prom-client resets its event-loop histogram at each scrape
  s.serve.log.length = 0;
  const statuses: number[] = [];
  const t0 = performance.now();
  const lat = await pollHealth(s, async () => {
    await Promise.all(Array.from({ length: UPLOADS }, () => editUpload(s.serve.value, big).then((st) => statuses.push(st))));
  });
  const wall = performance.now() - t0;
  const lagMax = await loopLagMaxMs(s.serve.value);
  const gc1 = await gcSums(s.serve.value);
  const cpu = mainThreadCpuMs(pid) - cpu0;
  // The main thread's isolate is the first to trace a GC (before the decode pool starts); the pool's are left out.
  const gcLines = [...s.serve.log.join("").matchAll(TRACE_GC)];
  s.mainIsolate ??= gcLines[0]?.[1];
  const pauses = gcLines.filter((m) => m[1] === s.mainIsolate).map((m) => Number(m[2]));
  const gc = { minor: gc1.minor - gc0.minor, major: gc1.major - gc0.major, total: gc1.total - gc0.total, minors: gc1.minors - gc0.minors, majors: gc1.majors - gc0.majors, longest: pauses.length ? Math.max(...pauses) : Number.NaN };
  const peak = mem(pid).hwm;
  await new Promise((r) => setTimeout(r, IDLE_MS));
  return { wall, statuses: [...new Set(statuses)].join(","), lat, lagMax, gc, cpu, rssBefore, peak, rssAfter: mem(pid).rss };
}

function gcLine(gc: GcTotals): string {
  return `${f1(gc.total)} ms (minor ${gc.minors}x ${f1(gc.minor)}, major ${gc.majors}x ${f1(gc.major)})${Number.isNaN(gc.longest) ? "" : `, longest pause ${f1(gc.longest)} ms`}`;
}

/** serve's GC pause totals so far by kind (prom-client's nodejs_gc_duration_seconds_sum), ms. */
async function gcSums(url: string): Promise<{ minor: number; major: number; total: number; minors: number; majors: number }> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const read = (what: "sum" | "count") => [...text.matchAll(new RegExp(`^nodejs_gc_duration_seconds_${what}\\{kind="(\\w+)"\\}\\s+([0-9.eE+-]+)`, "gm"))];
  const by = (ms: RegExpMatchArray[], k: string) => ms.filter((m) => m[1] === k).reduce((a, m) => a + Number(m[2]), 0);
  const [sums, counts] = [read("sum"), read("count")];
  return {
    minor: by(sums, "minor") * 1000,
    major: (by(sums, "major") + by(sums, "incremental")) * 1000,
    total: sums.reduce((a, m) => a + Number(m[2]) * 1000, 0),
    minors: by(counts, "minor"),
    majors: by(counts, "major"),
  };
}

/** serve's event-loop delay maximum since the last scrape (prom-client's nodejs_eventloop_lag_max_seconds), ms. */
async function loopLagMaxMs(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = /^nodejs_eventloop_lag_max_seconds\s+([0-9.eE+-]+)/m.exec(text);
  return m ? Number(m[1]) * 1000 : Number.NaN;
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? Number.NaN;
}
