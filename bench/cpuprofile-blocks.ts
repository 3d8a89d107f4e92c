/**
 * What held a thread without a break, from a V8 CPU profile (`node --cpu-prof`): the longest stretches of
 * consecutive non-idle samples, each with its top frames (self time), and the total busy time. A stretch is
 * measured in samples × the sampling interval, not in wall time, so a thread that the OS took off its core
 * mid-stretch (a busy machine) is not counted as blocked for that while: on a shared machine this is a steadier
 * relative measure of what blocks an event loop than its delay. GC shows as "(garbage collector)".
 *
 *   npx tsx bench/cpuprofile-blocks.ts --profile FILE.cpuprofile [--profile ...] [--from-ms 0] [--top 5]
 *     [--interval-us 1000]
 *
 * --from-ms skips the start (process start-up); --interval-us is the profile's --cpu-prof-interval (µs,
 * node's default 1000).
 */
import { readFileSync } from "node:fs";
import { benchArgs } from "./lib/bench-args.js";
import { intFlag } from "./lib/stats.js";

const args = benchArgs(import.meta.url, {
  profile: { type: "string", multiple: true },
  "from-ms": { type: "string", default: "0" },
  top: { type: "string", default: "5" },
  "interval-us": { type: "string", default: "1000" },
});
const FROM_MS = intFlag("from-ms", args["from-ms"], 0);
const TOP = intFlag("top", args.top, 1);
const INTERVAL_MS = intFlag("interval-us", args["interval-us"], 1) / 1000;

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

interface Stretch {
  atMs: number;
  samples: number;
  self: Map<string, number>;
}

function label(n: ProfileNode): string {
  const f = n.callFrame;
  return `${f.functionName || "(anonymous)"} ${f.url.split("/").slice(-2).join("/")}${f.url ? `:${f.lineNumber + 1}` : ""}`;
}

function stretches(p: Profile): Stretch[] {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const out: Stretch[] = [];
  let cur: Stretch | null = null;
  let t = 0;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i]! / 1000;
    if (t < FROM_MS) continue;
    const node = byId.get(p.samples[i]!)!;
    const name = node.callFrame.functionName;
    if (name === "(idle)" || name === "(program)") {
      if (cur) out.push(cur);
      cur = null;
      continue;
    }
    cur ??= { atMs: t, samples: 0, self: new Map() };
    cur.samples++;
    const l = label(node);
    cur.self.set(l, (cur.self.get(l) ?? 0) + 1);
  }
  if (cur) out.push(cur);
  return out;
}

const files = args.profile ?? [];
if (files.length === 0) {
  console.error("--profile FILE.cpuprofile is required (see --help)");
  process.exit(2);
}
const ms = (samples: number) => (samples * INTERVAL_MS).toFixed(1);
for (const file of files) {
  const all = stretches(JSON.parse(readFileSync(file, "utf8")) as Profile);
  const busy = all.reduce((a, s) => a + s.samples, 0);
  const gc = all.reduce((a, s) => a + [...s.self].filter(([k]) => k.startsWith("(garbage collector)")).reduce((b, [, v]) => b + v, 0), 0);
  const longest = [...all].sort((a, b) => b.samples - a.samples).slice(0, TOP);
  console.log(`${file}: busy ${ms(busy)} ms (GC ${ms(gc)} ms) in ${all.length} stretches; longest ${longest.map((s) => ms(s.samples)).join(", ")} ms`);
  for (const s of longest) {
    const frames = [...s.self].sort((a, b) => b[1] - a[1]).slice(0, 4).map(([k, v]) => `${ms(v)} ${k}`);
    console.log(`  ${ms(s.samples)} ms at ${(s.atMs / 1000).toFixed(1)} s: ${frames.join("; ")}`);
  }
}
