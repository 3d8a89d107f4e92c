/**
 * What a user sees when the CLI fails on a known error: one line naming the problem and its code, exit
 * status 1, no stack — unless they ask for it with --debug or OMNI_DIFFUSION_DEBUG. Spawns the real CLI.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";

const MAIN = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "omni-cli-errors-"));
writeFileSync(join(dir, "not-an-executor.mjs"), "export class NotAnExecutor {}\n");

/** Runs `omni-diffusion generate` with an executorClass that is not a DiffusionExecutor, from a folder outside the repo. */
function generateWithWrongExecutor(extraArgs: string[] = [], env: Record<string, string> = {}) {
  const args = ["--import", import.meta.resolve("tsx"), MAIN, "generate", "a red circle on a blue background", "--executor", "./not-an-executor.mjs#NotAnExecutor", ...extraArgs];
  const { OMNI_DIFFUSION_DEBUG: _, ...base } = process.env;
  return spawnSync(process.execPath, args, { cwd: dir, env: { ...base, ...env }, encoding: "utf8", timeout: 60_000 });
}

describe("CLI errors", () => {
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("an ExecutorTypeError prints as one line with its code, no stack, exit status 1", () => {
    const r = generateWithWrongExecutor();
    assert.equal(r.status, 1, r.stderr);
    const lines = r.stderr.trim().split("\n");
    assert.equal(lines.length, 1, `one line, got:\n${r.stderr}`);
    assert.match(lines[0]!, /^omni-diffusion: export "NotAnExecutor" of ".*not-an-executor\.mjs" must extend DiffusionExecutor \[OMNI_ERR_EXECUTOR_RESOLUTION\]$/);
    assert.doesNotMatch(r.stderr, /^\s+at /m);
  });

  it("--debug adds the stack", () => {
    const r = generateWithWrongExecutor(["--debug"]);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /^omni-diffusion: .*\[OMNI_ERR_EXECUTOR_RESOLUTION\]$/m);
    assert.match(r.stderr, /^ExecutorTypeError: /m);
    assert.match(r.stderr, /^\s+at .*resolve-executor/m);
  });

  it("OMNI_DIFFUSION_DEBUG=1 adds the stack too", () => {
    const r = generateWithWrongExecutor([], { OMNI_DIFFUSION_DEBUG: "1" });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /^\s+at .*resolve-executor/m);
  });
});
