/**
 * The conformance suite (`omni-diffusion/testing`) asks only what docs/custom-executors.md promises, and
 * says in words what failed. Each case runs the suite, as a user's test file would, in its own
 * `node --test` process on test/testing/fixtures/docs-executor.ts: an executor written from the guide alone
 * (its `ping` replies carry no `pid`, it has no `describeModel`), then with one newcomer's mistake each.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { test } from "node:test";
import { PACKAGE_ROOT } from "../../src/core/paths.js";

const RUNNER = fileURLToPath(new URL("./fixtures/docs-executor-conformance.ts", import.meta.url));

/** The suite's TAP report for the fixture with `mistake`, and the counts of its summary. */
async function runSuite(mistake?: string): Promise<{ code: number | null; tap: string; pass: number; fail: number; skipped: number }> {
  const env: NodeJS.ProcessEnv = { ...process.env, CONFORMANCE_MISTAKE: mistake ?? "" };
  delete env.NODE_TEST_CONTEXT; // else the child reports to this runner instead of printing its own report
  const child = spawn(process.execPath, ["--import", "tsx", "--test", "--test-reporter=tap", RUNNER], { cwd: PACKAGE_ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  let tap = "";
  child.stdout.on("data", (d: Buffer) => (tap += d.toString()));
  child.stderr.on("data", (d: Buffer) => (tap += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  const count = (what: string) => Number(new RegExp(`^# ${what} (\\d+)$`, "m").exec(tap)?.[1] ?? NaN);
  return { code, tap, pass: count("pass"), fail: count("fail"), skipped: count("skipped") };
}

test("an executor written from docs/custom-executors.md (ping replies { rank }, no pid, no describeModel) passes the suite", { timeout: 300_000 }, async () => {
  // Was: 2 of 6 checks failed, "Expected values to be strictly equal: 'undefined' !== 'number'" and
  // 'The "pid" argument must be of type number. Received undefined'.
  const r = await runSuite();
  assert.equal(r.code, 0, r.tap);
  assert.deepEqual({ pass: r.pass, fail: r.fail, skipped: r.skipped }, { pass: 5, fail: 0, skipped: 1 }, r.tap);
});

test("ping replies from the wrong rank fail with a message saying what was expected and why", { timeout: 300_000 }, async () => {
  const r = await runSuite("ping-rank");
  assert.equal(r.code, 1, r.tap);
  assert.ok(r.fail >= 1, r.tap);
  assert.match(r.tap, /ping reply 0 must be an object whose rank is 0 \(replies come in rank order, so callers index them by rank\); got \{ rank: 1 \}/, r.tap);
});

test("a uniqueReplyRank that is ignored fails with a message saying what was expected", { timeout: 300_000 }, async () => {
  const r = await runSuite("unique-array");
  assert.equal(r.code, 1, r.tap);
  assert.equal(r.fail, 1, `only the ping check fails:\n${r.tap}`);
  assert.match(r.tap, /collectiveRpc\("ping", \{ uniqueReplyRank: 0 \}\) must return rank 0's reply alone, an object, not an array of replies; got \[ \{ rank: 0 \} \]/, r.tap);
});
