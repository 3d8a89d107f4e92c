/**
 * What the remote executors cost, on the shipped model, over loopback.
 *
 *   npx tsx bench/remote.ts [--requests 24] [--rounds 3] [--size 32] [--steps 8] [--workers 1] [--threads N]
 *                           [--warmup 2000] [--load 48] [--json FILE]
 *
 * 0. Warm-up: --warmup one-step requests through each executor (taking turns) before anything is timed, so
 *    what is measured is a server's steady state. V8 optimises a function only after some thousands of
 *    calls, and a request runs most of its path (undici, fastify, grpc-js, the engine) once, so over the
 *    first hundreds of requests the remote paths run unoptimised code: their main-thread CPU per request
 *    drops from about 6 to 3.6 ms over 3000 requests here (local: 2.1 to 0.8). `--warmup 1` measures that
 *    cold start instead.
 * 1. Per-image time of the same requests, one at a time, through the local multi-process executor and
 *    through the `http` and `grpc` executors to an `omni-diffusion worker` started here with the same
 *    number of worker processes; printed side by side with the ratio to local (target ≤ 1.05): the median
 *    of per-request ratios, each request against the same request run locally right beside it. The modes
 *    take turns request by request, so a busy machine slows each of them alike. Beside it, the PNG encodes
 *    and decodes per image in this process (it holds the worker server and the clients): http and grpc
 *    encode once on the wire and decode nothing; multiproc does neither (raw RGB over IPC).
 * 2. Throughput (images/s) of `--load` concurrent requests through one `http` executor, with one worker
 *    server behind it, then two.
 */
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { DiffusionEngine, OmniDiffusionRequest, startWorkerServer, type OmniDiffusionConfigInput, type WorkerServer } from "../src/index.js";
import { HttpDiffusionExecutor } from "../src/executors/http-executor.js";
import { parseConfig } from "../src/core/config.js";
import { pngCounters, resetPngCounters } from "../src/utils/png.js";

const { values: args } = parseArgs({
  options: {
    requests: { type: "string", default: "24" },
    rounds: { type: "string", default: "3" },
    size: { type: "string", default: "32" },
    steps: { type: "string", default: "8" },
    workers: { type: "string", default: "1" },
    threads: { type: "string" },
    load: { type: "string", default: "48" },
    warmup: { type: "string", default: "2000" },
    json: { type: "string" },
    help: { type: "boolean", default: false },
  },
});
if (args.help) {
  console.log("usage: tsx bench/remote.ts [--requests 24] [--rounds 3] [--size 32] [--steps 8] [--workers 1] [--threads N] [--warmup 2000] [--load 48] [--json FILE]");
  process.exit(0);
}
const int = (name: keyof typeof args): number => {
  const v = Number(args[name]);
  if (!Number.isInteger(v) || v < 1) {
    console.error(`--${name} must be an integer >= 1, got ${String(args[name])}`);
    process.exit(2);
  }
  return v;
};
const [nRequests, rounds, size, steps, workers, load, warmup] = (["requests", "rounds", "size", "steps", "workers", "load", "warmup"] as const).map(int) as [number, number, number, number, number, number, number];
const threads = args.threads ? int("threads") : undefined;
const local: OmniDiffusionConfigInput = { numGpus: workers, ...(threads ? { intraOpNumThreads: threads } : {}) };

const requestSet = (tag: string) =>
  Array.from({ length: nRequests }, (_, i) => new OmniDiffusionRequest({ prompt: `a red circle ${i}`, width: size, height: size, numInferenceSteps: steps, seed: i, requestId: `${tag}-${i}` }));

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** Wall time of one request, ms. */
async function timed(engine: DiffusionEngine, r: OmniDiffusionRequest): Promise<number> {
  const t0 = performance.now();
  const out = await engine.generate(r);
  const ms = performance.now() - t0;
  if (out.images.length !== 1) throw new TypeError(`expected one image for ${r.requestId}`);
  return ms;
}

const servers: WorkerServer[] = [];
const engines: DiffusionEngine[] = [];
try {
  // ---- 1. per-image time: local multiproc vs http vs grpc, same requests ----
  const server = await startWorkerServer({ httpPort: 0, grpcPort: 0, engine: local });
  servers.push(server);
  await server.ready;
  const modes: [string, DiffusionEngine][] = [
    ["multiproc", await DiffusionEngine.create(local)],
    ["http", await DiffusionEngine.create({ executorClass: "http", executorOptions: { endpoints: [server.httpUrl!] } })],
    ["grpc", await DiffusionEngine.create({ executorClass: "grpc", executorOptions: { endpoints: [server.grpcAddress!] } })],
  ];
  engines.push(...modes.map(([, e]) => e));
  const warmStart = performance.now();
  for (let i = 0; i < warmup; i++) {
    for (const [name, e] of modes) {
      const out = await e.generate({ prompt: `warm-up ${i}`, width: size, height: size, numInferenceSteps: 1, seed: i, requestId: `warm-${name}-${i}` });
      if (out.error) throw out.error;
    }
  }
  console.log(`warm-up: ${warmup} one-step requests per executor in ${((performance.now() - warmStart) / 1000).toFixed(1)} s`);
  const times = new Map<string, number[]>(modes.map(([name]) => [name, []]));
  // PNG work this process does per image (the worker server and the clients live here; the worker processes do none).
  const png = new Map<string, { encodes: number; decodes: number }>(modes.map(([name]) => [name, { encodes: 0, decodes: 0 }]));
  // Request by request the modes take turns (rotating who goes first), so drift in the machine's load hits each alike.
  for (let round = 0; round < rounds; round++) {
    const sets = new Map(modes.map(([name]) => [name, requestSet(`${name}-${round}`)]));
    for (let i = 0; i < nRequests; i++) {
      for (let k = 0; k < modes.length; k++) {
        const [name, engine] = modes[(i + k) % modes.length]!;
        resetPngCounters();
        times.get(name)!.push(await timed(engine, sets.get(name)![i]!));
        png.get(name)!.encodes += pngCounters.encodes;
        png.get(name)!.decodes += pngCounters.decodes;
      }
    }
  }
  const base = times.get("multiproc")!;
  console.log(`\nper-image time: ${nRequests} requests x ${rounds} rounds, one at a time, ${size}x${size}, ${steps} steps, ${workers} worker process(es), after ${warmup} warm-up requests each`);
  console.log(`  ${"executor".padEnd(10)} ${"median ms".padStart(10)} ${"mean ms".padStart(9)} ${"vs multiproc".padStart(13)}`);
  const perImage: Record<string, { medianMs: number; meanMs: number; ratio: number }> = {};
  for (const [name] of modes) {
    const xs = times.get(name)!;
    const med = median(xs);
    const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
    // The median of per-request ratios: each request against the local run of the same request, run beside it.
    const ratio = median(xs.map((x, i) => x / base[i]!));
    perImage[name] = { medianMs: med, meanMs: mean, ratio };
    const work = png.get(name)!;
    const perImg = `${(work.encodes / xs.length).toFixed(2)} / ${(work.decodes / xs.length).toFixed(2)}`;
    console.log(`  ${name.padEnd(10)} ${med.toFixed(1).padStart(10)} ${mean.toFixed(1).padStart(9)} ${ratio.toFixed(3).padStart(13)} ${perImg.padStart(22)}${name === "multiproc" ? "" : "  (target <= 1.05)"}`);
  }
  for (const e of engines.splice(0)) await e.close();

  // ---- 2. throughput: one worker server vs two behind one http executor ----
  const second = await startWorkerServer({ httpPort: 0, engine: local });
  servers.push(second);
  await second.ready;
  const throughput = async (endpoints: string[], tag: string) => {
    const ex = new HttpDiffusionExecutor(parseConfig({ executorOptions: { endpoints } }));
    await ex.init();
    try {
      const reqs = Array.from({ length: load }, (_, i) => new OmniDiffusionRequest({ prompt: `a blue square ${i}`, width: size, height: size, numInferenceSteps: steps, seed: i, requestId: `${tag}-${i}` }));
      await ex.executeModel([new OmniDiffusionRequest({ prompt: "warm-up", width: size, height: size, numInferenceSteps: steps, requestId: `${tag}-warm` })]);
      const before = ex.endpointMetrics().map((m) => m.successes);
      const t0 = performance.now();
      const outs = await Promise.all(reqs.map((r) => ex.executeModel([r])));
      const s = (performance.now() - t0) / 1000;
      const images = outs.reduce((a, o) => a + o.output.length, 0);
      if (images !== load) throw new TypeError(`expected ${load} images, got ${images}`);
      return { seconds: s, imagesPerSecond: images / s, perEndpoint: ex.endpointMetrics().map((m, i) => m.successes - before[i]!) };
    } finally {
      await ex.close();
    }
  };
  const one = await throughput([server.httpUrl!], "one");
  const two = await throughput([server.httpUrl!, second.httpUrl!], "two");
  console.log(`\nthroughput: ${load} concurrent requests through one http executor, ${workers} worker process(es) per server`);
  console.log(`  1 server : ${one.imagesPerSecond.toFixed(2)} images/s (${one.seconds.toFixed(2)} s)`);
  console.log(`  2 servers: ${two.imagesPerSecond.toFixed(2)} images/s (${two.seconds.toFixed(2)} s; requests per server ${two.perEndpoint.join(" / ")})`);
  console.log(`  ratio    : ${(two.imagesPerSecond / one.imagesPerSecond).toFixed(2)}x`);
  if (args.json) {
    writeFileSync(args.json, JSON.stringify({ config: { nRequests, rounds, size, steps, workers, threads, load, warmup }, perImage, throughput: { one, two } }, null, 2));
  }
} finally {
  for (const e of engines) await e.close();
  for (const s of servers) await s.close();
}
