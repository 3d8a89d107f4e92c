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
 *   3 pipelines           the ONNX pipeline (uses schedulers), StepLoop (the one denoise driver)
 *   4 protocol            wire / gRPC / proto codecs, worker IPC, queue protocol: what executors and
 *                         workers/servers share, so neither reaches into the other's folder
 *   5 workers             DiffusionWorker, worker-main (the child-process side of the IPC)
 *   7 executors           one transport per file over policies and protocol
 *   8 engine              DiffusionEngine, batch queue (above the executors it drives)
 *   9 metrics, hub        Prometheus gauges over the engine; model download (used by the CLI)
 *  10 server, testing     the OpenAI server, the worker and queue servers, the conformance suite
 *  11 cli                 the command line
 *  12 (src/index.ts)      the public API: re-exports only
 *
 * Inside executors/ the same rule holds one level down ({@link EXECUTOR_FLOORS}): the contract, then the
 * shared pieces, then a backend's own folder, then the backends (one transport per file, none importing
 * another), then the registry that imports them lazily, then the resolver that reads it.
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

/**
 * executors/ path (a file, or a folder ending in `/`) → floor inside executors/; a file takes its own entry,
 * else its folder's, else `(backends)`. A file may import a lower floor, or its own subfolder (shared/,
 * queue/); two files on the backends floor never import each other.
 */
export const EXECUTOR_FLOORS: Readonly<Record<string, number>> = {
  "base.ts": 0, // DiffusionExecutor: the contract every executor extends
  "executor-type-error.ts": 0,
  "shared/": 1, // worker processes, rank supervision, the HTTP client, the remote executor base, options
  "queue/": 2, // the queue backend's own parts (job waiters, RPC broadcast, event reader)
  "(backends)": 3, // one transport per file: multiproc, uniproc, http, grpc, sagemaker, openai, queue
  "executor-registry.ts": 4, // imports every backend, lazily
  "resolve-executor.ts": 5,
};

/** The EXECUTOR_FLOORS key of an executors/ file (path under executors/). */
function executorPlace(sub: string): string {
  if (sub in EXECUTOR_FLOORS) return sub;
  const folder = sub.includes("/") ? `${sub.split("/")[0]}/` : null;
  return folder && folder in EXECUTOR_FLOORS ? folder : "(backends)";
}

/** Imports inside executors/ that break EXECUTOR_FLOORS, as `from (place, floor) -> to (place, floor)`. */
function executorViolations(graph: ReadonlyMap<string, readonly string[]>): string[] {
  const inside = (f: string) => f.startsWith("executors/");
  return [...graph].flatMap(([f, targets]) => {
    if (!inside(f)) return [];
    const from = executorPlace(f.slice("executors/".length));
    return targets.filter(inside).flatMap((t) => {
      const to = executorPlace(t.slice("executors/".length));
      const [ff, tf] = [EXECUTOR_FLOORS[from]!, EXECUTOR_FLOORS[to]!];
      const ok = tf < ff || (tf === ff && from === to && from.endsWith("/"));
      return ok ? [] : [`${f} (${from}, floor ${ff}) -> ${t} (${to}, floor ${tf})`];
    });
  });
}

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

  it("inside executors/: shared/ below the backends, no backend importing another (EXECUTOR_FLOORS)", () => {
    assert.deepEqual(executorViolations(graph), []);
  });

  it("the executors/ checker sees a backend importing a backend, shared/ importing a backend, and a sibling folder", () => {
    assert.ok((graph.get("executors/http-executor.ts") ?? []).includes("executors/shared/http-client.ts"), "executors/http-executor.ts -> shared/http-client.ts was not seen");
    const fake = new Map([
      ["executors/http-executor.ts", ["executors/grpc-executor.ts", "executors/shared/http-client.ts", "executors/base.ts"]],
      ["executors/shared/remote-executor.ts", ["executors/http-executor.ts", "executors/shared/remote-options.ts", "executors/base.ts"]],
      ["executors/queue/job-waiters.ts", ["executors/queue/event-reader.ts", "executors/shared/http-client.ts"]],
      ["executors/shared/http-client.ts", ["executors/queue/event-reader.ts"]],
      ["executors/executor-registry.ts", ["executors/grpc-executor.ts", "executors/resolve-executor.ts"]],
    ]);
    assert.deepEqual(executorViolations(fake), [
      "executors/http-executor.ts ((backends), floor 3) -> executors/grpc-executor.ts ((backends), floor 3)",
      "executors/shared/remote-executor.ts (shared/, floor 1) -> executors/http-executor.ts ((backends), floor 3)",
      "executors/shared/http-client.ts (shared/, floor 1) -> executors/queue/event-reader.ts (queue/, floor 2)",
      "executors/executor-registry.ts (executor-registry.ts, floor 4) -> executors/resolve-executor.ts (resolve-executor.ts, floor 5)",
    ]);
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
