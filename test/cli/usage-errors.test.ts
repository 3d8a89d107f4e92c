/**
 * A usage error (bad flag value, unknown option or command, missing argument) prints what the README
 * promises: `omni-diffusion: <message>` and one line pointing at the command's --help, exit status 1 —
 * not commander's "error: ..." followed by the whole 40-line help. Spawns the real CLI; nothing loads.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

const MAIN = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));

function cli(...args: string[]) {
  return spawnSync(process.execPath, ["--import", import.meta.resolve("tsx"), MAIN, ...args], { encoding: "utf8", timeout: 60_000 });
}

/** Asserts the two-line shape: the error, then where the help is; nothing on stdout. */
function assertUsageError(r: ReturnType<typeof cli>, message: RegExp, help: string): void {
  assert.equal(r.status, 1, r.stderr);
  assert.equal(r.stdout, "");
  const lines = r.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 2, `an error line and a help pointer, got:\n${r.stderr}`);
  assert.match(lines[0]!, /^omni-diffusion: /);
  assert.match(lines[0]!, message);
  assert.equal(lines[1], `(see '${help} --help')`);
  assert.doesNotMatch(r.stderr, /Usage:|Options:/, "the help itself is not printed");
}

describe("CLI usage errors", () => {
  it("a bad flag value is one line naming the flag and what it expects, then a pointer to --help", () => {
    assertUsageError(cli("generate", "a red circle", "--steps", "abc"), /option '--steps <n>' argument 'abc' is invalid.*expected an integer/, "omni-diffusion generate");
  });

  it("an unknown option, a missing argument and a bad choice point at their own command's help", () => {
    assertUsageError(cli("generate", "a red circle", "--stpes", "4"), /unknown option .--stpes. \(did you mean --steps\?\)$/, "omni-diffusion generate");
    assertUsageError(cli("generate"), /missing required argument 'prompt'/, "omni-diffusion generate");
    assertUsageError(cli("info", "--device", "gpu"), /argument 'gpu' is invalid.*cpu, cuda/, "omni-diffusion info");
    assertUsageError(cli("worker", "--http-port", "x"), /--http-port/, "omni-diffusion worker");
  });

  it("an unknown command points at the top-level help", () => {
    assertUsageError(cli("genrate", "a red circle"), /unknown command .genrate. \(did you mean generate\?\)$/, "omni-diffusion");
  });

  it("--help itself still prints the help, exit status 0", () => {
    const r = cli("generate", "--help");
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^Usage: omni-diffusion generate/);
  });
});
