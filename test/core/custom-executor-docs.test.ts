/**
 * Keeps examples/example_custom_executor.ts and docs/custom-executors.md true: the example, which imports
 * `omni-diffusion` as a user's code does, passes the conformance suite imported from
 * `omni-diffusion/testing` (the package's built dist/, so the suite and the example share its classes),
 * runs as a script from any folder, and every name the guide imports exists in the public API.
 * The guide's code blocks themselves run in test/docs/verbatim.test.ts.
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

const EXAMPLE = join(PACKAGE_ROOT, "examples", "example_custom_executor.ts");
ensureBuilt();
const { runExecutorConformance } = await import("omni-diffusion/testing");
const pkg = await import("omni-diffusion");
const { MyExecutor } = await import("../../examples/example_custom_executor.js");

runExecutorConformance("MyExecutor (examples/example_custom_executor.ts)", () => ({ executorClass: `${EXAMPLE}#MyExecutor`, intraOpNumThreads: 1 }));

for (const [how, executorClass] of [
  ["by class", MyExecutor],
  ["by string path, relative to the working directory", "./examples/example_custom_executor.ts#MyExecutor"],
] as const) {
  test(`the package's engine loads the example ${how}`, { timeout: 120_000 }, async () => {
    process.chdir(PACKAGE_ROOT);
    const engine = await pkg.DiffusionEngine.create({ executorClass, intraOpNumThreads: 1 });
    try {
      assert.equal(engine.executor.constructor.name, "MyExecutor");
      const [out] = await engine.step([new pkg.OmniDiffusionRequest({ prompt: "a red circle on a blue background", seed: 42, numInferenceSteps: 2 })]);
      assert.equal(out!.error, null);
      assert.equal(out!.images[0]!.width, 32);
      await engine.checkHealth();
    } finally {
      await engine.close();
    }
  });
}

test("the example runs as a script, as its header says, and from any folder", () => {
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
