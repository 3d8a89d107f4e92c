/**
 * The layering inside src/server/ (issue 22 §3), by the import-graph approach of layering.test.ts: every
 * relative import of every src/server/**\/*.ts file (static, `export … from` and dynamic `import()`),
 * checked against the server's own floors, low → high:
 *
 *   0 shared     what every server needs: HTTP limits, site guard, API key, the zod validator, upload decoding
 *   1 app        the app shell: server, context, options, model card, generation flow, error mapping
 *   2 dialects   openai, a1111, ui, predictions (peer plugins of the app), worker and queue (servers of their own):
 *                each imports only app/ and shared/, never another dialect
 *   3 (root)     src/server/*.ts: the composition that registers the dialects with the app
 *
 * Plus two checks of the same issue: one zod validator compiler for every fastify app, and A1111 routes
 * that declare their schemas instead of parsing in their handlers.
 */
import assert from "node:assert/strict";
import { readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, it } from "node:test";
import ts from "typescript";

const SERVER = resolve(import.meta.dirname, "../../src/server");

const DIALECTS = ["openai", "a1111", "ui", "predictions", "worker", "queue"] as const;

/** Subfolder of src/server/ → floor; files directly in src/server/ are `(root)`. */
const FLOORS: Readonly<Record<string, number>> = {
  shared: 0,
  app: 1,
  ...Object.fromEntries(DIALECTS.map((d) => [d, 2])),
  "(root)": 3,
};

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith(".ts") ? [p] : [];
  });
}

/** src/server/-relative paths `source` (a file at `rel`) imports; outside src/server/ they start with `../`. */
function importsOf(rel: string, source: string): string[] {
  return ts
    .preProcessFile(source, true, true)
    .importedFiles.map((i) => i.fileName)
    .filter((s) => s.startsWith("."))
    .map((s) => relative(SERVER, resolve(dirname(join(SERVER, rel)), s)).replace(/\.js$/, ".ts"));
}

const folderOf = (rel: string): string => (rel.includes("/") ? rel.split("/")[0]! : "(root)");
const inServer = (rel: string): boolean => !rel.startsWith("..");

const files = walk(SERVER).map((f) => relative(SERVER, f));
const sources = new Map(files.map((f) => [f, readFileSync(join(SERVER, f), "utf8")]));
const graph = new Map(files.map((f) => [f, importsOf(f, sources.get(f)!).filter(inServer)]));

/** Every import of `graph` that runs up a floor, or across from one dialect to another. */
function violations(g: ReadonlyMap<string, readonly string[]>): string[] {
  return [...g].flatMap(([f, targets]) =>
    targets.flatMap((t) => {
      const [from, to] = [folderOf(f), folderOf(t)];
      if ((FLOORS[to] ?? 0) > (FLOORS[from] ?? 0)) return [`${f} (${from}, floor ${FLOORS[from]}) -> ${t} (${to}, floor ${FLOORS[to]})`];
      if (from !== to && FLOORS[from] === 2 && FLOORS[to] === 2) return [`${f} -> ${t}: dialect ${from} imports dialect ${to}`];
      return [];
    }),
  );
}

describe("src/server/ layering", () => {
  it("every subfolder of src/server/ has a floor", () => {
    const unknown = [...new Set(files.map(folderOf))].filter((d) => !(d in FLOORS));
    assert.deepEqual(unknown, [], "add the new folder to FLOORS here (a new dialect: to DIALECTS) and to docs/architecture.md");
  });

  it("shared < app < dialects < the root composition, and no dialect imports another", () => {
    assert.deepEqual(violations(graph), []);
  });

  it("the dialects the app serves are registered by the root composition, each through the app's plugin type", () => {
    const root = graph.get("omni-server.ts") ?? [];
    for (const d of ["openai", "a1111", "ui", "predictions"]) assert.ok(root.some((t) => folderOf(t) === d), `omni-server.ts registers no ${d}/ plugin`);
    assert.ok(root.includes("app/server-plugin.ts"), "omni-server.ts does not type its plugin list with app/server-plugin.ts");
  });

  it("one zod validator compiler for every fastify app (shared/zod-validator.ts)", () => {
    const compilers = files.filter((f) => /\.setValidatorCompiler\(/.test(sources.get(f)!));
    assert.deepEqual(compilers, ["shared/zod-validator.ts"]);
    for (const f of ["app/server-app.ts", "a1111/a1111-routes.ts", "worker/fastify-app.ts"]) {
      assert.ok(graph.get(f)?.includes("shared/zod-validator.ts"), `${f} does not use the shared validator`);
    }
  });

  it("A1111 routes declare their schemas: nothing under a1111/ parses a body itself", () => {
    const parsing = files.filter((f) => folderOf(f) === "a1111" && /\.(safeParse|parse)\(/.test(sources.get(f)!));
    assert.deepEqual(parsing, []);
  });

  it("the checker itself sees imports and flags an upward and a sideways one", () => {
    // Guards against a checker that passes because it parsed nothing.
    assert.ok(files.length > 30, `only ${files.length} files found under src/server/`);
    assert.ok(graph.get("app/server-app.ts")?.includes("shared/http-limits.ts"), "app/server-app.ts -> shared/http-limits.ts was not seen");
    assert.deepEqual(importsOf("a1111/x.ts", `// import { a } from "../openai/commented.js"\nimport { b } from "../app/c.js";\nconst d = await import("../ui/e.js");`), ["app/c.ts", "ui/e.ts"]);
    const bad = new Map([
      ["shared/a.ts", ["app/b.ts"]],
      ["a1111/c.ts", ["openai/d.ts", "app/b.ts", "shared/a.ts"]],
      ["worker/e.ts", ["queue/f.ts"]],
      ["openai/g.ts", ["omni-server.ts"]],
    ]);
    assert.deepEqual(violations(bad), [
      "shared/a.ts (shared, floor 0) -> app/b.ts (app, floor 1)",
      "a1111/c.ts -> openai/d.ts: dialect a1111 imports dialect openai",
      "worker/e.ts -> queue/f.ts: dialect worker imports dialect queue",
      "openai/g.ts (openai, floor 2) -> omni-server.ts ((root), floor 3)",
    ]);
  });
});
