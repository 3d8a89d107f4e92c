/**
 * A seeded generator of hostile requests: wrong types, huge and tiny sizes, broken encodings, deep
 * nesting, odd unicode, and every way of (not) sending the key. Pure functions of the random stream, so a
 * seed reproduces a run exactly (`FUZZ_SEED`).
 */
import { seededRandom } from "../../bench/lib/serve-load.js";
import { inflatedSize } from "../../src/utils/png-header.js";
import { bombPng, pngWith, zeroStream } from "../helpers/png-bombs.js";

/** The benchmarks' seedable PRNG (mulberry32, uniform in [0, 1)): one seed, one run. */
export const makeRng: (seed: number) => () => number = seededRandom;

export type Rng = () => number;
export const int = (rng: Rng, lo: number, hi: number) => lo + Math.floor(rng() * (hi - lo + 1));
export const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)]!;
export const chance = (rng: Rng, p: number) => rng() < p;

const WEIRD_STRINGS = [
  "",
  " ",
  "é",
  "ünïcødé ✓ 漢字 🦀",
  "\u0000",
  "\ud800", // lone surrogate
  "\u202e\u200b",
  "../../etc/passwd",
  "%00%ff",
  "${process.exit()}",
  "<script>alert(1)</script>",
  "a red circle on a blue background",
  "__proto__",
  "constructor",
  "x".repeat(20_000),
];
const WEIRD_NUMBERS = [0, -1, 1, 2, 7, 8, 31, 32, 33, 64, 1e9, -1e9, 1e308, -0, 0.5, 2 ** 53, 4294967296, 1.5, 65536];

/** A random JSON value, `depth` levels deep at most. */
export function randomValue(rng: Rng, depth = 3): unknown {
  const r = rng();
  if (depth <= 0 || r < 0.3) return pick(rng, WEIRD_STRINGS);
  if (r < 0.55) return pick(rng, WEIRD_NUMBERS);
  if (r < 0.62) return pick(rng, [true, false, null]);
  if (r < 0.8) return Array.from({ length: int(rng, 0, 4) }, () => randomValue(rng, depth - 1));
  const o: Record<string, unknown> = {};
  for (let i = int(rng, 0, 4); i > 0; i--) o[pick(rng, ["prompt", "n", "size", "width", "requests", "method", "args", "kwargs", "request_ids", "rpc", "health", pick(rng, WEIRD_STRINGS)])] = randomValue(rng, depth - 1);
  return o;
}

/** JSON nested `levels` deep (arrays or objects). */
export function deepJson(rng: Rng, levels: number): string {
  return chance(rng, 0.5) ? `${"[".repeat(levels)}${"]".repeat(levels)}` : `${'{"a":'.repeat(levels)}1${"}".repeat(levels)}`;
}

/** A small valid generate request dict (cheap: 32x32, 1-2 steps). */
export function validRequestDict(rng: Rng): Record<string, unknown> {
  return {
    prompt: pick(rng, ["a red circle on a blue background", "a yellow star on a black background"]),
    width: 32,
    height: 32,
    num_inference_steps: int(rng, 1, 2),
    seed: int(rng, 0, 1000),
  };
}

/** `base` with one field replaced, removed or added by a hostile value. */
export function mutate(rng: Rng, base: Record<string, unknown>): Record<string, unknown> {
  const out = { ...base };
  const keys = Object.keys(out);
  const r = rng();
  if (r < 0.5 && keys.length) out[pick(rng, keys)] = randomValue(rng, 2);
  else if (r < 0.7 && keys.length) delete out[pick(rng, keys)];
  else out[pick(rng, ["guidance_scale", "negative_prompt", "scheduler", "request_id", "num_outputs_per_prompt", "seed", "extra", "__proto__"])] = randomValue(rng, 2);
  return out;
}

/** One HTTP body: bytes plus the headers that describe them (possibly lying). */
export interface HostileBody {
  body: Buffer;
  headers: [string, string][];
}

/** A body for a JSON route: valid-ish JSON, mutated JSON, broken JSON, wrong encodings, oversize, deep. */
export function hostileBody(rng: Rng, validBody: () => unknown, maxBytes: number): HostileBody {
  const ct = pick(rng, [
    "application/json",
    "application/json",
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=latin1",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "",
  ]);
  const headers: [string, string][] = ct ? [["Content-Type", ct]] : [];
  if (chance(rng, 0.06)) headers.push(["Content-Encoding", pick(rng, ["gzip", "br", "deflate", "identity", "x-unknown"])]);
  const r = rng();
  let text: string | Buffer;
  if (r < 0.35) text = JSON.stringify(validBody());
  else if (r < 0.55) text = JSON.stringify(mutateDeep(rng, validBody()));
  else if (r < 0.65) text = JSON.stringify(randomValue(rng, 4));
  else if (r < 0.68) text = deepJson(rng, pick(rng, [65, 200, 5_000, 50_000]));
  else if (r < 0.72) text = JSON.stringify(validBody()).replace(/\[\]|"[^"]*"(?=[,}\]])/, deepJson(rng, pick(rng, [65, 5_000]))); // deep inside a valid body
  else if (r < 0.78) text = JSON.stringify(validBody()).slice(0, int(rng, 0, 20));
  else if (r < 0.83) text = Buffer.from(Array.from({ length: int(rng, 1, 64) }, () => int(rng, 0, 255)));
  else if (r < 0.87) text = "";
  else if (r < 0.91) text = JSON.stringify({ ...(validBody() as object), pad: "x".repeat(maxBytes + int(rng, 1, 1000)) });
  else if (r < 0.95) text = Buffer.from(JSON.stringify(validBody()).replace("a", "\xe9"), "latin1");
  else text = `\ufeff${JSON.stringify(validBody())}`;
  return { body: Buffer.isBuffer(text) ? text : Buffer.from(text, "utf8"), headers };
}

function mutateDeep(rng: Rng, v: unknown): unknown {
  if (Array.isArray(v)) return v.length && chance(rng, 0.7) ? v.map((x, i) => (i === 0 ? mutateDeep(rng, x) : x)) : randomValue(rng, 2);
  if (v && typeof v === "object") {
    const o = v as Record<string, unknown>;
    const key = Object.keys(o)[0];
    if (key && chance(rng, 0.6)) return { ...o, [key]: mutateDeep(rng, o[key]) };
    return mutate(rng, o);
  }
  return randomValue(rng, 2);
}

/** An Authorization header variant: none, wrong, right, right with odd spacing, another scheme, two of them. */
export function hostileAuth(rng: Rng, key: string): [string, string][] {
  return pick(rng, [
    [],
    [["Authorization", `Bearer ${key}`]],
    [["Authorization", `Bearer ${key}`]],
    [["Authorization", `Bearer ${key}`]],
    [["Authorization", `  bearer   ${key}  `]],
    [["Authorization", "Bearer wrong"]],
    [["Authorization", `Basic ${key}`]],
    [["Authorization", "Bearer"]],
    [["Authorization", `Bearer ${key}`], ["Authorization", "Bearer other"]],
    [["Authorization", `Bearer ${"k".repeat(10_000)}`]],
  ] as [string, string][][]);
}

/**
 * Every kind of hostile PNG a decoder meets (issue 21): decompression bombs (interlaced and not; 32 KiB files
 * that inflate to 32 MiB), a real 4096² image (a grey one of ~16 KiB), a header claiming 50,000², 16-bit
 * samples, a truncated file, a colour type that does not exist, random bytes and, for contrast, a valid
 * 32x32 image.
 */
export const HOSTILE_PNGS: Readonly<Record<string, () => Buffer>> = {
  "interlaced bomb": () => bombPng(32 * 1024),
  "flat bomb": () => bombPng(32 * 1024, { width: 32, height: 32, interlaced: false }),
  "4096x4096": () => {
    const h = { width: 4096, height: 4096, colourType: 0 };
    return pngWith(h, zeroStream(inflatedSize({ ...h, bitDepth: 8, interlaced: false })));
  },
  "50000x50000 header": () => pngWith({ width: 50_000, height: 50_000 }, zeroStream(1024)),
  "16-bit": () => pngWith({ width: 8, height: 8, bitDepth: 16, colourType: 2 }, zeroStream(8 * 49)),
  truncated: () => bombPng(32 * 1024).subarray(0, 200),
  "colour type 5": () => pngWith({ width: 8, height: 8, colourType: 5 }, zeroStream(8 * 33)),
  "random bytes": () => Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 73 + 11) & 255)),
  "valid 32x32": () => pngWith({ width: 32, height: 32, colourType: 2 }, zeroStream(32 * 97)),
};

/** One of {@link HOSTILE_PNGS}, base64 (as JSON bodies carry images). */
export function hostilePngB64(rng: Rng): string {
  return HOSTILE_PNGS[pick(rng, Object.keys(HOSTILE_PNGS))]!().toString("base64");
}
