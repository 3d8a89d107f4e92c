/**
 * The engine's `describeModel` call on a custom executor (src/engine/model-limits-fetch.ts): an executor
 * that does not implement it is silent, a malformed reply gives one short warning line naming the field.
 * The executor is test/testing/fixtures/docs-executor.ts, written from docs/custom-executors.md.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { after, test } from "node:test";
import { DiffusionEngine } from "../../src/index.js";

const EXECUTOR = `${fileURLToPath(new URL("../testing/fixtures/docs-executor.ts", import.meta.url))}#DocsExecutor`;

const warnings: string[] = [];
const onWarning = (w: Error) => warnings.push(w.message);
process.on("warning", onWarning);
after(() => process.off("warning", onWarning));

/** Starts and closes an engine on the fixture with `mistake`; returns its model limits and the warnings of its start. */
async function start(mistake?: string): Promise<{ limits: unknown; warnings: string[] }> {
  warnings.length = 0;
  const engine = await DiffusionEngine.create({ executorClass: EXECUTOR, intraOpNumThreads: 1, executorOptions: mistake ? { mistake } : {} });
  try {
    await new Promise((resolve) => setImmediate(resolve)); // warnings are emitted on the next tick
    return { limits: engine.modelLimits, warnings: [...warnings] };
  } finally {
    await engine.close();
  }
}

test("an executor without describeModel (UnknownMethodError, as the guide says) starts silently", { timeout: 120_000 }, async () => {
  assert.deepEqual(await start(), { limits: null, warnings: [] });
});

test("an executor whose unknown methods answer undefined starts silently", { timeout: 120_000 }, async () => {
  // Was: "the executor did not describe its model (invalid ModelLimits: (root): Invalid input: ...)".
  assert.deepEqual(await start("describe-undefined"), { limits: null, warnings: [] });
});

test("a generic describeModel reply gives one short warning line naming the first bad field", { timeout: 120_000 }, async () => {
  // Was: every field of ModelLimits listed, eight problems in one long warning.
  const r = await start("describe-generic");
  assert.equal(r.limits, null, "the reply is ignored");
  assert.equal(r.warnings.length, 1, r.warnings.join("\n"));
  const [w] = r.warnings as [string];
  assert.equal(
    w,
    "omni-diffusion: DocsExecutor's describeModel reply was ignored (nativeWidth: Invalid input: expected number, received undefined, and 7 more problems); only the config's limits apply",
  );
  assert.ok(!w.includes("\n") && w.length <= 200, `one short line: ${w.length} characters`);
});
