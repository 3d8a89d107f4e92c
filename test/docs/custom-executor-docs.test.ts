/**
 * Keeps examples/example_custom_executor.ts and docs/custom-executors.md true: the example, which imports
 * `omni-diffusion` as a user's code does, passes the conformance suite imported from
 * `omni-diffusion/testing`, runs as a script (from the repository root as its header says, and from any
 * folder, where the name resolves to the built dist/), and every name the guide imports exists in the
 * public API. Inside this repository, under tsx, `omni-diffusion` resolves to src/ through tsconfig.json's
 * `paths`, so the example, the suite and the engine share one DiffusionExecutor. The guide's code blocks
 * themselves run from an installed copy in test/docs/verbatim.test.ts.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import * as api from "../../src/index.js";
import { PACKAGE_ROOT } from "../../src/core/paths.js";
import { ensureBuilt } from "../helpers/built-package.js";
import { runExecutorConformance } from "omni-diffusion/testing";

const EXAMPLE = join(PACKAGE_ROOT, "examples", "example_custom_executor.ts");

runExecutorConformance("MyExecutor (examples/example_custom_executor.ts)", () => ({ executorClass: `${EXAMPLE}#MyExecutor`, intraOpNumThreads: 1 }));

test("the example runs as a script, as its header says, and from any folder", { timeout: 300_000 }, () => {
  ensureBuilt(); // outside the repository the package name resolves to dist/
  const run = (cwd: string, file: string) =>
    execFileSync(process.execPath, [join(PACKAGE_ROOT, "node_modules", "tsx", "dist", "cli.mjs"), file], { cwd, encoding: "utf8", timeout: 120_000 });
  assert.match(readFileSync(EXAMPLE, "utf8"), /from the repository root:\s+npx tsx examples\/example_custom_executor\.ts/);
  assert.match(run(PACKAGE_ROOT, "examples/example_custom_executor.ts"), /1 image\(s\) 32x32, seed 42/);
  assert.match(run(tmpdir(), EXAMPLE), /1 image\(s\) 32x32, seed 42/);
});

test("every name docs/custom-executors.md imports from omni-diffusion is exported", () => {
  const md = readFileSync(join(PACKAGE_ROOT, "docs", "custom-executors.md"), "utf8");
  const names = [...md.matchAll(/import \{([^}]+)\} from "omni-diffusion"/g)].flatMap((m) => m[1]!.split(",").map((s) => s.replace(/^\s*type\s+/, "").trim()).filter(Boolean));
  assert.ok(names.length >= 5, `found ${names.length} imported names`);
  const typeOnly = new Set(["CollectiveRpcOptions", "ExecuteOptions"]);
  for (const n of names) if (!typeOnly.has(n)) assert.ok(n in api, `${n} is not exported from src/index.ts`);
  for (const method of ["initExecutor", "collectiveRpc", "executeModel", "checkHealth", "shutdown", "abortRequest", "sleep", "wakeUp"]) {
    assert.ok(md.includes(method), `guide mentions ${method}`);
    assert.ok(method in api.DiffusionExecutor.prototype || ["initExecutor", "collectiveRpc", "checkHealth", "shutdown"].includes(method), method);
  }
  for (const topic of ["supportsContinuousBatching", "UniprocExecutor", "uniqueReplyRank", "--import tsx", "width × height × 3", "omni-diffusion/testing"]) {
    assert.ok(md.includes(topic), `guide covers ${topic}`);
  }
});
