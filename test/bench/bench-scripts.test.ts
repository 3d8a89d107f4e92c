/**
 * The benchmarks a newcomer runs from the docs: `--help` prints the script's header and exits 0 (bench/fuzz.ts
 * and bench/soak.ts crashed on it with a parseArgs stack), a wrong flag is one line, and bench/serve.ts's
 * default sizes are ones the shipped model serves (its 64x64 default was a 400 at the warm-up). Spawns them.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

const bench = (script: string, ...args: string[]) =>
  spawnSync(process.execPath, ["--import", import.meta.resolve("tsx"), fileURLToPath(new URL(`../../bench/${script}`, import.meta.url)), ...args], { encoding: "utf8", timeout: 240_000 });

describe("bench scripts", { timeout: 600_000 }, () => {
  for (const script of ["fuzz.ts", "soak.ts"]) {
    it(`${script} --help prints its header and exits 0 without starting anything`, () => {
      const r = bench(script, "--help");
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`npx tsx bench/${script.replace(".", "\\.")} --`));
      assert.doesNotMatch(r.stdout + r.stderr, /serving|RSS before|at parseArgs/);
    });

    it(`${script} with an unknown flag is one line and exit status 2`, () => {
      const r = bench(script, "--cuont", "5");
      assert.equal(r.status, 2, r.stderr);
      const lines = r.stderr.trimEnd().split("\n");
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0]!, /^Unknown option '--cuont'.*\(see --help\)$/);
    });
  }

  it("serve.ts --compare-batching runs with its default sizes on the shipped model", () => {
    const r = bench("serve.ts", "--compare-batching", "--num-prompts", "2", "--concurrency", "2", "--steps", "1", "--max-batch", "2", "--threads", "1");
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /sizes 32x32,/);
    assert.match(r.stdout, /Throughput ratio \(batching \/ --max-batch 1\)/);
  });
});
