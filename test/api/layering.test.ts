/**
 * The layering of src/: every relative import of every src/**\/*.ts file (static, `export … from`, and
 * dynamic `import()`; imports inside comments such as TSDoc examples do not count), checked two ways:
 *
 * 1. no import circle between files (a circle makes load order and mocking fragile, and hides a missing seam);
 * 2. no import that runs up a floor: a file may import its own folder and any folder on a lower floor.
 *
 * The floors, low → high (the why of each is in docs/architecture.md):
 *
 *   0 errors, utils       shared by everything, import nothing of ours but each other
 *   1 schedulers          one sampler per file; pure math that needs nothing of core (core checks
 *                         scheduler names against their registry, so schedulers sit below it)
 *   1 policies            deadlines, retry, breakers, endpoint pool: they need only errors and utils, so
 *                         the worker and every executor can share one Deadline
 *   2 core                request, output, config, limits, progress types, model paths and the Hub cache
 *   3 pipelines           the ONNX pipeline (uses schedulers)
 *   4 protocol            wire / gRPC / proto codecs, worker IPC, queue protocol: what executors and
 *                         workers/servers share, so neither reaches into the other's folder
 *   5 workers             DiffusionWorker, StepLoop, worker-main (the child-process side of the IPC)
 *   7 executors           one transport per file over policies and protocol
 *   8 engine              DiffusionEngine, batch queue (above the executors it drives)
 *   9 metrics, hub        Prometheus gauges over the engine; model download (used by the CLI)
 *  10 server, testing     the OpenAI server, the worker and queue servers, the conformance suite
 *  11 cli                 the command line
 *  12 (src/index.ts)      the public API: re-exports only
 */
import assert from "node:assert/strict";
import { readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, it } from "node:test";
import ts from "typescript";

const ROOT = resolve(import.meta.dirname, "../..");
const SRC = join(ROOT, "src");

/** Folder (first path segment under src/) → floor. Files directly in src/ are `(root)`. */
export const FLOORS: Readonly<Record<string, number>> = {
  errors: 0,
  utils: 0,
  schedulers: 1,
  core: 2,
  pipelines: 3,
  protocol: 4,
  workers: 5,
  policies: 1,
  executors: 7,
  engine: 8,
  metrics: 9,
  hub: 9,
  server: 10,
  testing: 10,
  cli: 11,
  "(root)": 12,
};

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith(".ts") ? [p] : [];
  });
}

/** src/-relative path of every file `file` imports (relative specifiers only; packages are not ours). */
function importsOf(file: string): string[] {
  const info = ts.preProcessFile(readFileSync(file, "utf8"), true, true);
  return info.importedFiles
    .map((i) => i.fileName)
    .filter((s) => s.startsWith("."))
    .map((s) => relative(SRC, resolve(dirname(file), s)).replace(/\.js$/, ".ts"));
}

const folderOf = (rel: string): string => (rel.includes("/") ? rel.split("/")[0]! : "(root)");

const files = walk(SRC).map((f) => relative(SRC, f));
const graph = new Map(files.map((f) => [f, importsOf(join(SRC, f))]));

/** Every elementary circle found by a depth-first search (each reported once, from its first file). */
function cycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  const found: string[][] = [];
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const visit = (f: string): void => {
    state.set(f, "open");
    stack.push(f);
    for (const t of graph.get(f) ?? []) {
      if (state.get(t) === "open") found.push([...stack.slice(stack.indexOf(t)), t]);
      else if (!state.has(t) && graph.has(t)) visit(t);
    }
    stack.pop();
    state.set(f, "done");
  };
  for (const f of graph.keys()) if (!state.has(f)) visit(f);
  return found;
}

describe("src/ layering", () => {
  it("every folder of src/ has a floor", () => {
    const unknown = [...new Set(files.map(folderOf))].filter((d) => !(d in FLOORS));
    assert.deepEqual(unknown, [], "add the new folder to FLOORS (and docs/architecture.md)");
  });

  it("every relative import names a file that exists", () => {
    const missing = [...graph].flatMap(([f, ts]) => ts.filter((t) => !graph.has(t)).map((t) => `${f} -> ${t}`));
    assert.deepEqual(missing, []);
  });

  it("has no import circles", () => {
    assert.deepEqual(
      cycles(graph).map((c) => c.join(" -> ")),
      [],
    );
  });

  it("never imports from a higher floor", () => {
    const upward = [...graph].flatMap(([f, targets]) =>
      targets
        .filter((t) => (FLOORS[folderOf(t)] ?? 0) > (FLOORS[folderOf(f)] ?? 0))
        .map((t) => `${f} (${folderOf(f)}, floor ${FLOORS[folderOf(f)]}) -> ${t} (${folderOf(t)}, floor ${FLOORS[folderOf(t)]})`),
    );
    assert.deepEqual(upward, []);
  });

  it("the checker itself sees an upward import and a circle", () => {
    // Guards against a checker that passes because it parsed nothing.
    assert.ok(files.length > 50, `only ${files.length} files found under src/`);
    assert.ok((graph.get("engine/engine.ts") ?? []).includes("core/request.ts"), "engine/engine.ts -> core/request.ts was not seen");
    const fake = ts.preProcessFile(`// import { x } from "./commented.js"\nimport { y } from "../executors/base.js";\nconst z = await import("./lazy.js");`, true, true);
    assert.deepEqual(
      fake.importedFiles.map((i) => i.fileName),
      ["../executors/base.js", "./lazy.js"],
    );
    const circle = new Map([["a.ts", ["b.ts"]], ["b.ts", ["c.ts"]], ["c.ts", ["a.ts"]], ["d.ts", ["a.ts"]]]);
    assert.deepEqual(cycles(circle), [["a.ts", "b.ts", "c.ts", "a.ts"]]);
  });
});
