/**
 * Every code block of README.md and docs/*.md that a user would paste runs, verbatim, from a folder
 * outside the repository where the package is installed (install-package.ts: as from its tarball, with
 * what the docs ask the user to add beside it).
 * Each document's blocks run in order in their own folder, so a later block may use a file an earlier
 * one saved. TypeScript/JavaScript blocks run with `node --import tsx` (`--test` for `*.test.*` files),
 * shell blocks with bash. A block that must not run carries `<!-- not-run: reason -->` (test/docs/code-blocks.ts),
 * and is reported as skipped with that reason.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join, relative } from "node:path";
import { after, before, describe, it } from "node:test";
import { PACKAGE_ROOT } from "../../src/core/paths.js";
import { extractCodeBlocks, type CodeBlock } from "./code-blocks.js";
import { installPackage } from "./install-package.js";

/** Hang guard per block: a CLI run loads the model in a worker process; a conformance run does it several times. */
const BLOCK_TIMEOUT_MS = 300_000;
const DOCS = ["README.md", ...readdirSync(join(PACKAGE_ROOT, "docs")).filter((f) => f.endsWith(".md")).sort().map((f) => `docs/${f}`)];

let base = "";

/** The environment of a user's shell in that folder: no settings inherited from this test run. */
function userEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^(NODE_OPTIONS|NODE_TEST_CONTEXT|OMNI_|npm_)/i.test(k)) env[k] = v;
  env.PATH = `${join(base, "node_modules", ".bin")}:${process.env.PATH ?? ""}`;
  return env;
}

/** Runs a command; resolves with its exit status and combined output (tail), killing it at the hang guard. */
function run(cmd: string, args: string[], cwd: string): Promise<{ code: number | null; signal: NodeJS.Signals | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env: userEnv(), stdio: ["ignore", "pipe", "pipe"], detached: true });
    let output = "";
    const keep = (d: Buffer) => (output = (output + d.toString()).slice(-8_000));
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    const guard = setTimeout(() => {
      try {
        process.kill(-child.pid!, "SIGKILL"); // the block's whole process group: CLI, workers, servers it started
      } catch {}
    }, BLOCK_TIMEOUT_MS);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(guard);
      resolve({ code, signal, output });
    });
  });
}

/** Whether a later block of the same document uses this file (then that block runs it). */
function usedLater(blocks: CodeBlock[], i: number, fileName: string): boolean {
  const names = [fileName, fileName.replace(/\.m?ts$/, ".js")];
  return blocks.slice(i + 1).some((b) => !b.notRun && names.some((n) => b.code.includes(n)));
}

describe("docs: every code block a user would paste runs verbatim", { timeout: 60 * BLOCK_TIMEOUT_MS }, () => {
  before(() => {
    base = mkdtempSync(join(tmpdir(), "omni-docs-"));
    assert.ok(relative(PACKAGE_ROOT, base).startsWith(".."), "the folder is outside the repository");
    installPackage(base);
  });
  after(() => {
    if (base) rmSync(base, { recursive: true, force: true });
  });

  for (const doc of DOCS) {
    const blocks = extractCodeBlocks(readFileSync(join(PACKAGE_ROOT, doc), "utf8"));
    if (!blocks.length) continue;
    describe(doc, () => {
      const dir = () => join(base, doc.replace(/[/.]/g, "_"));
      before(() => mkdirSync(dir(), { recursive: true }));

      blocks.forEach((block, i) => {
        const name = `${doc}:${block.line} (${block.lang}${block.fileName ? ` ${block.fileName}` : ""})`;
        if (block.notRun) {
          it(name, { skip: `not-run: ${block.notRun}` }, () => {});
          return;
        }
        it(name, { timeout: BLOCK_TIMEOUT_MS + 10_000 }, async (t) => {
          assert.equal(block.markerError, undefined, block.markerError);
          const file = block.fileName ?? `block-${block.line}.${block.kind === "ts" ? "ts" : "sh"}`;
          mkdirSync(dirname(join(dir(), file)), { recursive: true });
          writeFileSync(join(dir(), file), block.code);
          if (block.fileName && usedLater(blocks, i, block.fileName)) {
            t.diagnostic(`saved as ${file}; a later block runs it`);
            return;
          }
          const isTest = /\.test\.[mc]?[jt]s$/.test(basename(file));
          const r =
            block.kind === "sh"
              ? await run("bash", ["-e", "-o", "pipefail", file], dir())
              : await run(process.execPath, ["--import", "tsx", ...(isTest ? ["--test"] : []), file], dir());
          assert.equal(r.code, 0, `${name} failed (exit ${r.code}${r.signal ? `, ${r.signal}` : ""}) in ${dir()}:\n--- block ---\n${block.code}--- output (tail) ---\n${r.output}`);
        });
      });
    });
  }
});
