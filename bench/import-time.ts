/**
 * How long `import "omni-diffusion"` takes, for two builds of the package side by side.
 *
 *   npx tsx bench/import-time.ts [--base /work/wt/base/dist] [--head dist] [--runs 5]
 *
 * Each run is a fresh `node` process that imports `<dist>/index.js` and prints the milliseconds the import
 * took (not node's own start-up), its CPU time, and the packages it loaded. The two builds take turns, run
 * by run, so a busy machine slows both alike; the medians and their ratios (head / base) are printed. Build both
 * first (`npx tsc -p tsconfig.build.json` in each tree): the built package is what users load, and tsx's
 * on-the-fly compiling would dominate the figure.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

const { values: args } = parseArgs({
  options: {
    base: { type: "string", default: "/work/wt/base/dist" },
    head: { type: "string", default: "dist" },
    runs: { type: "string", default: "5" },
  },
});
const runs = Number(args.runs);

/** Packages worth naming when one of them loads: the backends' SDKs and the biggest dependencies. */
const HEAVY = ["bullmq", "ioredis", "@aws-sdk/client-sagemaker-runtime", "@grpc/grpc-js", "fastify", "onnxruntime-node", "undici", "protobufjs", "prom-client"];

const CHILD = `import { createRequire } from "node:module";
const t = performance.now();
const c = process.cpuUsage();
await import(process.argv[1]);
const ms = performance.now() - t;
const used = process.cpuUsage(c);
const cpuMs = (used.user + used.system) / 1000;
const files = Object.keys(createRequire(import.meta.url).cache).filter((k) => k.includes("/node_modules/"));
const names = new Set(files.map((k) => /node_modules\\/((?:@[^/]+\\/)?[^/]+)\\//.exec(k)?.[1]).filter(Boolean));
console.log(JSON.stringify({ ms, cpuMs, files: files.length, packages: [...names] }));
process.exit(0);`;

interface ImportRun {
  ms: number;
  /** CPU time of the import (every thread of the process): what a busy machine moves less than wall time. */
  cpuMs: number;
  /** CommonJS files loaded from node_modules: a figure machine load does not move. */
  files: number;
  packages: string[];
}

function importOnce(dist: string): ImportRun {
  const entry = pathToFileURL(resolve(dist, "index.js")).href;
  return JSON.parse(execFileSync(process.execPath, ["--input-type=module", "-e", CHILD, entry], { encoding: "utf8", timeout: 60_000 })) as ImportRun;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const builds = { base: resolve(args.base), head: resolve(args.head) };
for (const [name, dir] of Object.entries(builds)) {
  if (!existsSync(resolve(dir, "index.js"))) throw new Error(`${name}: no ${dir}/index.js; build it with npx tsc -p tsconfig.build.json`);
}
// One import of each first, untimed: the disk cache is then warm for both.
const first = Object.fromEntries(Object.entries(builds).map(([name, dir]) => [name, importOnce(dir)]));
const ms: Record<string, number[]> = { base: [], head: [] };
const cpu: Record<string, number[]> = { base: [], head: [] };
for (let i = 0; i < runs; i++) {
  for (const [name, dir] of Object.entries(builds)) {
    const run = importOnce(dir);
    ms[name]!.push(run.ms);
    cpu[name]!.push(run.cpuMs);
  }
}

for (const [name, dir] of Object.entries(builds)) {
  console.log(`${name.padEnd(4)} ${dir}: median ${median(ms[name]!).toFixed(0)} ms (runs: ${ms[name]!.map((x) => x.toFixed(0)).join(", ")}), CPU ${median(cpu[name]!).toFixed(0)} ms`);
  const run = first[name]!;
  console.log(`     ${run.packages.length} packages, ${run.files} CommonJS files; heavy ones: ${run.packages.filter((p) => HEAVY.includes(p)).join(", ") || "none"}`);
}
console.log(`ratio head / base: ${(median(ms.head!) / median(ms.base!)).toFixed(2)} (wall), ${(median(cpu.head!) / median(cpu.base!)).toFixed(2)} (CPU)`);
