/**
 * Full-size random-weight Stable Diffusion exports (training/fixtures/fullsize/), built on demand into a cache
 * folder outside the repository, and PyTorch eager timings of the very same weights (torch_bench.py).
 *
 * The cache is `$OMNI_FULLSIZE_DIR/<kind>`, by default `~/.cache/omni-diffusion/fullsize/<kind>`. A folder counts
 * as built when its stamp (`.fullsize-stamp.json`, written last by the maker) names the kind and the hash of the
 * maker's current sources, and every file it lists is there with its size; otherwise it is rebuilt (~1-2 min,
 * 4.3 GB for sd15, 5.2 GB for sd21; peak ~7 GiB of RAM). Two processes building the same kind at once are not
 * guarded against: let one build first.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

export type FullsizeKind = "sd15" | "sd21";
export type TorchBenchWhat = "unet" | "vae_decode" | "tiny_decode";

export const PYTHON = "/usr/bin/python3";
const FIXTURES = fileURLToPath(new URL("../../training/fixtures/", import.meta.url));
export const MAKE_FULLSIZE = join(FIXTURES, "fullsize", "make_fullsize.py");
export const TORCH_BENCH = join(FIXTURES, "fullsize", "torch_bench.py");
export const STAMP = ".fullsize-stamp.json";
const INSTALL_HINT = "apt-get install -y python3-torch python3-onnx python3-regex";

/** The cache root: `$OMNI_FULLSIZE_DIR`, else `~/.cache/omni-diffusion/fullsize`. */
export function fullsizeRoot(): string {
  return process.env.OMNI_FULLSIZE_DIR ?? join(homedir(), ".cache", "omni-diffusion", "fullsize");
}

/**
 * The files whose content decides a fixture: components.py's `SOURCES` (make_fullsize.py refuses to run when a
 * module it loads from fullsize/ is missing there), relative to training/fixtures.
 */
export const FULLSIZE_SOURCES = [
  "fullsize/clip_text.py",
  "fullsize/components.py",
  "fullsize/make_fullsize.py",
  "fullsize/unet.py",
  "fullsize/vae.py",
  "clip_bpe.py",
  "make_fixtures.py",
] as const;

/**
 * The maker's source hash, as components.py's `source_hash()` computes it: sha256 over, for each of
 * {@link FULLSIZE_SOURCES} in order, its path, a NUL, the file's bytes, a NUL.
 */
export function fullsizeSourceHash(): string {
  const h = createHash("sha256");
  for (const rel of FULLSIZE_SOURCES) {
    h.update(`${rel}\0`);
    h.update(readFileSync(join(FIXTURES, rel)));
    h.update("\0");
  }
  return h.digest("hex");
}

/** Why the folder is not a complete, current build; null when it is. */
export function staleReason(dir: string, kind: FullsizeKind, hash = fullsizeSourceHash()): string | null {
  const stamp = join(dir, STAMP);
  if (!existsSync(stamp)) return `no ${STAMP} in ${dir}`;
  let s: { kind?: unknown; sourceHash?: unknown; files?: Record<string, number> };
  try {
    s = JSON.parse(readFileSync(stamp, "utf8")) as typeof s;
  } catch (err) {
    return `${stamp} is not JSON (${(err as Error).message})`;
  }
  if (s.kind !== kind) return `${stamp} is for ${String(s.kind)}, not ${kind}`;
  if (s.sourceHash !== hash) return `the fixture maker changed since ${dir} was built`;
  for (const [rel, size] of Object.entries(s.files ?? {})) {
    const p = join(dir, rel);
    if (!existsSync(p) || statSync(p).size !== size) return `${p} is missing or has another size than when it was built`;
  }
  return null;
}

/** Lines of a child's stream, each to `onLine`; the last `keep` lines are kept for error messages. */
function collectLines(stream: NodeJS.ReadableStream, onLine: (line: string) => void, keep = 20): string[] {
  const tail: string[] = [];
  createInterface({ input: stream }).on("line", (line) => {
    tail.push(line);
    if (tail.length > keep) tail.shift();
    onLine(line);
  });
  return tail;
}

/** Runs `PYTHON args`; resolves with its stdout lines, rejects with a one-line reason (and its stderr's tail). */
function runPython(args: string[], onStdout: (line: string) => void, what: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, args, { stdio: ["ignore", "pipe", "pipe"] });
    const out: string[] = [];
    collectLines(child.stdout!, (l) => {
      out.push(l);
      onStdout(l);
    });
    const err = collectLines(child.stderr!, () => {});
    child.once("error", (e) => reject(new Error(`${what}: cannot run ${PYTHON} (${e.message}); install it with: ${INSTALL_HINT}`)));
    child.once("close", (code, sig) => {
      if (code === 0) return resolve(out);
      const tail = err.filter((l) => !/Warning|warnings\.warn|_C\._jit/.test(l)).slice(-8).join("\n");
      reject(new Error(`${what} failed (${sig ?? `exit ${code}`}): ${tail || out.slice(-3).join(" | ")}`));
    });
  });
}

/** Throws a one-line error naming the packages when /usr/bin/python3 cannot import torch, onnx and regex. */
export async function checkPython(): Promise<void> {
  if (!existsSync(PYTHON)) throw new Error(`the full-size fixtures need ${PYTHON} with torch and onnx: ${INSTALL_HINT}`);
  try {
    await runPython(["-c", "import torch, onnx, regex"], () => {}, "importing torch, onnx and regex");
  } catch (err) {
    const last = (err as Error).message.split("\n").filter(Boolean).pop() ?? "";
    throw new Error(`the full-size fixtures need torch, onnx and regex in ${PYTHON} (${last.trim()}): ${INSTALL_HINT}`);
  }
}

const building = new Map<FullsizeKind, Promise<string>>();

/**
 * The folder of the `kind` fixture, built first (make_fullsize.py, its progress lines to `log`) unless it is
 * complete and made by the current sources. Rejects with a one-line reason when Python, torch or the disk space
 * is missing.
 */
export function ensureFullsizeModel(kind: FullsizeKind, opts: { log?: (line: string) => void } = {}): Promise<string> {
  const pending = building.get(kind);
  if (pending) return pending;
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const p = (async () => {
    const dir = join(fullsizeRoot(), kind);
    const why = staleReason(dir, kind);
    if (why === null) return dir;
    log(`full-size ${kind} fixture: building into ${dir} (${why})`);
    await checkPython();
    await runPython([MAKE_FULLSIZE, "--kind", kind, "--out", dir], (l) => log(l), `make_fullsize.py --kind ${kind}`);
    const after = staleReason(dir, kind);
    if (after !== null) throw new Error(`make_fullsize.py --kind ${kind} finished but ${after}`);
    return dir;
  })();
  building.set(kind, p);
  p.then(
    () => building.delete(kind),
    () => building.delete(kind),
  );
  return p;
}

/**
 * PyTorch eager milliseconds per run (one warm-up run first, not counted) of a full-size component on the
 * fixture's weights: `unet` (one call on `batch` rows at `size`²), `vae_decode` or `tiny_decode` (`batch` latents
 * of `size`/8). Needs no built fixture: torch_bench.py rebuilds the same weights from the same seeds.
 */
export async function torchBench(kind: FullsizeKind, what: TorchBenchWhat, size: number, batch: number, repeat: number): Promise<number[]> {
  await checkPython();
  const args = [TORCH_BENCH, "--kind", kind, "--what", what, "--size", String(size), "--batch", String(batch), "--repeat", String(repeat)];
  const lines = await runPython(args, () => {}, `torch_bench.py --kind ${kind} --what ${what}`);
  const last = lines.filter((l) => l.startsWith("{")).pop();
  if (!last) throw new Error(`torch_bench.py printed no JSON line: ${lines.slice(-3).join(" | ")}`);
  const ms = (JSON.parse(last) as { ms?: unknown }).ms;
  if (!Array.isArray(ms) || !ms.every((v) => typeof v === "number")) throw new Error(`torch_bench.py's JSON has no "ms" array: ${last}`);
  return ms as number[];
}
