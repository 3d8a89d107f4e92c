/**
 * Decoding untrusted PNGs, measured on real `omni-diffusion serve` and `worker` processes (issue 21 items 1,
 * 2 and 7), on the shipped model:
 *
 *   1. peak RSS (VmHWM, reset before each case) of serve and of the worker for a decompression bomb of
 *      --bomb-mib MiB (a 32x32 interlaced header over ~1,000x that in zeros) sent to POST /v1/images/edits,
 *      A1111 img2img and the worker's POST /v1/diffusion/generate, with each answer's status;
 *   2. /health latency (polled one after another) while --uploads maximal uploads decode at once: serve runs
 *      with --max-size 1024, so the upload cap is 2048x2048 and each upload is a 2048x2048 RGBA PNG; beside
 *      it, serve's own event-loop delay maximum (prom-client's, from /metrics): a /health answer slower than
 *      that waited for a core, not for serve's event loop;
 *   3. serve's RSS before, at the peak of, and --idle-ms after each of --spikes such spikes.
 *
 *   npx tsx bench/decode-bench.ts [--root DIR] [--uploads 8] [--bomb-mib 2] [--spikes 2] [--idle-ms 5000]
 *
 * --root runs the CLI of another checkout (say an older commit unpacked with `git archive`) for before/after
 * numbers; its node_modules must be installed (a symlink to this one's works). Linux only (/proc).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { readFileSync, writeFileSync } from "node:fs";
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
});
const ROOT = resolve(args.root);
const UPLOADS = intFlag("uploads", args.uploads, 1);
const BOMB_MIB = intFlag("bomb-mib", args["bomb-mib"], 1);
const SPIKES = intFlag("spikes", args.spikes, 1);
const IDLE_MS = intFlag("idle-ms", args["idle-ms"], 0);
const MiB = 1024 * 1024;
const COMMON = ["--workers", "1", "--threads", "1"];

/** Spawns the CLI of ROOT and resolves once `ready(stdout so far)` returns a value. */
async function startCli<T>(cmd: string[], ready: (out: string) => T | undefined): Promise<{ child: ChildProcess; value: T }> {
  const child = spawn(process.execPath, ["--import", "tsx", resolve(ROOT, "src/cli/main.ts"), ...cmd], { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] });
  child.stdout!.setEncoding("utf8");
  let out = "";
  const value = await new Promise<T>((res, rej) => {
    setTimeout(() => rej(new Error(`${cmd[0]} was not ready within 180 s`)), 180_000).unref();
    child.stdout!.on("data", (d: string) => {
      out = (out + d).slice(-8192);
      const v = ready(out);
      if (v !== undefined) res(v);
    });
    child.once("exit", (code) => rej(new Error(`${cmd[0]} exited with ${code} before it was ready`)));
  });
  child.stdout!.resume();
  return { child, value };
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
const bomb = bombPng(BOMB_MIB * MiB);
console.log(`\n1. a ${f1(bomb.length / MiB)} MiB bomb (32x32 interlaced header; inflates to ${BOMB_MIB * 1024} MiB unbounded)`);
{
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

// 2 and 3. Maximal uploads: /health while they decode, RSS over spikes.
const big = maximalPng(2048);
console.log(`\n2. /health while ${UPLOADS} maximal uploads decode (2048x2048 RGBA, ${f1(big.length / MiB)} MiB each; serve --max-size 1024)`);
{
  const serve = await startCli(["serve", "--port", "0", "--log-level", "info", "--max-size", "1024", ...COMMON], serveReady);
  const pid = serve.child.pid!;
  try {
    await editUpload(serve.value, maximalPng(32));
    const idle: number[] = [];
    for (let i = 0; i < 20; i++) idle.push(await timedHealth(serve.value));
    console.log(`  idle: /health p50 ${f1(pct(idle, 50))} ms, max ${f1(Math.max(...idle))} ms`);
    for (let s = 1; s <= SPIKES; s++) {
      const before = mem(pid);
      resetPeak(pid);
      await loopLagMaxMs(serve.value); // prom-client resets its event-loop histogram at each scrape
      const t0 = performance.now();
      let pending = UPLOADS;
      const statuses: number[] = [];
      const uploads = Array.from({ length: UPLOADS }, () => editUpload(serve.value, big).then((st) => (statuses.push(st), pending--)));
      const lat: number[] = [];
      while (pending > 0) lat.push(await timedHealth(serve.value));
      await Promise.all(uploads);
      const wall = performance.now() - t0;
      const lagMax = await loopLagMaxMs(serve.value);
      const peak = mem(pid).hwm;
      await new Promise((r) => setTimeout(r, IDLE_MS));
      const after = mem(pid).rss;
      console.log(
        `  spike ${s}: ${UPLOADS} uploads in ${f1(wall / 1000)} s (statuses ${[...new Set(statuses)].join(",")}); /health x${lat.length}: p50 ${f1(pct(lat, 50))} ms, p99 ${f1(pct(lat, 99))} ms, max ${f1(Math.max(...lat))} ms; serve's own event-loop delay max ${f1(lagMax)} ms`,
      );
      console.log(`           serve RSS ${f1(before.rss)} MiB before, peak ${f1(peak)} MiB, ${f1(after)} MiB ${IDLE_MS} ms after`);
    }
  } finally {
    await stop(serve.child);
  }
}

/** serve's event-loop delay maximum since the last scrape (prom-client's nodejs_eventloop_lag_max_seconds), ms. */
async function loopLagMaxMs(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = /^nodejs_eventloop_lag_max_seconds\s+([0-9.eE+-]+)/m.exec(text);
  return m ? Number(m[1]) * 1000 : Number.NaN;
}

async function timedHealth(url: string): Promise<number> {
  const t = performance.now();
  const res = await fetch(`${url}/health`);
  await res.arrayBuffer();
  return performance.now() - t;
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? Number.NaN;
}
