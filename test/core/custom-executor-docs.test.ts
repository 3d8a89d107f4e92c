/**
 * Keeps docs/custom-executors.md and examples/example_custom_executor.ts true: the example passes the
 * executor conformance suite, runs as a script, and every name the guide imports exists in the public API.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import * as api from "../../src/index.js";
import { PACKAGE_ROOT } from "../../src/core/paths.js";
import { runExecutorConformance } from "../conformance/executor-conformance.js";

runExecutorConformance("MyExecutor (examples/example_custom_executor.ts)", () => ({
  executorClass: "./examples/example_custom_executor.ts#MyExecutor",
  intraOpNumThreads: 1,
}));

test("the example runs as a script and prints its image", () => {
  const out = execFileSync(process.execPath, ["--import", "tsx", "examples/example_custom_executor.ts"], { cwd: PACKAGE_ROOT, encoding: "utf8", timeout: 120_000 });
  assert.match(out, /1 image\(s\) 32x32, seed 42/);
});

test("every name docs/custom-executors.md imports from omni-diffusion is exported", () => {
  const md = readFileSync(join(PACKAGE_ROOT, "docs", "custom-executors.md"), "utf8");
  const names = [...md.matchAll(/import \{([^}]+)\} from "omni-diffusion"/g)].flatMap((m) => m[1]!.split(",").map((s) => s.replace(/^\s*type\s+/, "").trim()).filter(Boolean));
  assert.ok(names.length >= 5, `found ${names.length} imported names`);
  const typeOnly = new Set(["CollectiveRpcOptions"]);
  for (const n of names) if (!typeOnly.has(n)) assert.ok(n in api, `${n} is not exported from src/index.ts`);
  for (const method of ["initExecutor", "collectiveRpc", "executeModel", "checkHealth", "shutdown", "abortRequest", "sleep", "wakeUp"]) {
    assert.ok(md.includes(method), `guide mentions ${method}`);
    assert.ok(method in api.DiffusionExecutor.prototype || ["initExecutor", "collectiveRpc", "checkHealth", "shutdown"].includes(method), method);
  }
});
