/**
 * Runs one bench script from two checkouts of this repository, alternating, in one run: a refactor's
 * before/after on the same machine at the same time (machines are noisy; two separate runs are not comparable).
 *
 *   npx tsx bench/before-after.ts --before DIR --bench rpc.ts [--bench-args="--workers 2"] [--after DIR] [--rounds 2] [--keys REGEX]
 *
 * `--before` is another checkout (e.g. `git worktree add /tmp/base <commit>` with node_modules linked); `--after`
 * defaults to this one. Each round runs `tsx <checkout>/bench/BENCH.ts --json FILE ...args` in before, then
 * after (the order flips every round so warm caches favour neither). Every numeric leaf of the two JSON
 * reports is printed as the median over rounds, before vs after, with the ratio after/before.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { benchArgs } from "./lib/bench-args.js";
import { intFlag, median } from "./lib/stats.js";

const args = benchArgs(import.meta.url, {
  before: { type: "string" },
  after: { type: "string", default: resolve(import.meta.dirname, "..") },
  bench: { type: "string" },
  "bench-args": { type: "string", default: "" },
  rounds: { type: "string", default: "2" },
  keys: { type: "string" },
});
const bench = args.bench;
if (!args.before || !bench) {
  console.error("--before DIR and --bench NAME are required (see --help)");
  process.exit(2);
}
const forwarded = args["bench-args"].split(/\s+/).filter(Boolean);
const rounds = intFlag("rounds", args.rounds, 1);
const keyFilter = args.keys ? new RegExp(args.keys) : null;
const sides = { before: resolve(args.before), after: resolve(args.after) } as const;
type Side = keyof typeof sides;

/** Every numeric leaf of a JSON value, keyed by its path (`summary.1.p50Us`). */
function leaves(value: unknown, path = "", out = new Map<string, number>()): Map<string, number> {
  if (typeof value === "number" && Number.isFinite(value)) out.set(path, value);
  else if (value && typeof value === "object") for (const [k, v] of Object.entries(value)) leaves(v, path ? `${path}.${k}` : k, out);
  return out;
}

const tmp = mkdtempSync(join(tmpdir(), "before-after-"));
const runs: Record<Side, Map<string, number>[]> = { before: [], after: [] };
try {
  for (let round = 0; round < rounds; round++) {
    const order: Side[] = round % 2 === 0 ? ["before", "after"] : ["after", "before"];
    for (const side of order) {
      const json = join(tmp, `${side}-${round}.json`);
      const dir = sides[side];
      console.log(`round ${round + 1}/${rounds}: ${side} (${dir})`);
      execFileSync(join(dir, "node_modules/.bin/tsx"), [join(dir, "bench", bench), ...forwarded, "--json", json], { cwd: dir, stdio: ["ignore", "ignore", "inherit"] });
      runs[side].push(leaves(JSON.parse(readFileSync(json, "utf8"))));
    }
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}

const keys = [...runs.after[0]!.keys()].filter((k) => runs.before[0]!.has(k) && (!keyFilter || keyFilter.test(k)));
const width = Math.max(...keys.map((k) => k.length), 6);
console.log(`\n${bench}: median of ${rounds} run(s) per side, alternating\n`);
console.log(`${"metric".padEnd(width)} ${"before".padStart(12)} ${"after".padStart(12)} ${"after/before".padStart(13)}`);
for (const k of keys) {
  const b = median(runs.before.map((m) => m.get(k)!));
  const a = median(runs.after.map((m) => m.get(k)!));
  const ratio = b === 0 ? (a === 0 ? "1.000" : "n/a") : (a / b).toFixed(3);
  console.log(`${k.padEnd(width)} ${fmt(b).padStart(12)} ${fmt(a).padStart(12)} ${ratio.padStart(13)}`);
}

function fmt(n: number): string {
  return Math.abs(n) >= 1000 || Number.isInteger(n) ? n.toFixed(0) : n.toPrecision(4);
}
