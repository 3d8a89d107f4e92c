/**
 * Every TypeScript block of README.md and docs/*.md type-checks as a user would compile it: in a folder
 * outside the repository where the package is installed (install-package.ts), under the tsconfig.json that
 * this project's TypeScript (5.9) writes with `tsc --init` (strict, nodenext, noUncheckedIndexedAccess,
 * exactOptionalPropertyTypes, verbatimModuleSyntax, ...). Blocks marked not-run are checked too: a reader
 * pastes a sketch or a fragment as well, so it declares what it uses (as parameters, or imports) instead of
 * leaning on names that exist nowhere. verbatim.test.ts runs the blocks; tsx does not type-check them.
 */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { after, before, describe, it } from "node:test";
import { PACKAGE_ROOT } from "../../src/core/paths.js";
import { extractCodeBlocks } from "./code-blocks.js";
import { installPackage } from "./install-package.js";

const TSC = createRequire(import.meta.url).resolve("typescript/bin/tsc");
const DOCS = ["README.md", ...readdirSync(join(PACKAGE_ROOT, "docs")).filter((f) => f.endsWith(".md")).sort().map((f) => `docs/${f}`)];

describe("docs: every TypeScript block type-checks under `tsc --init`'s settings", { timeout: 600_000 }, () => {
  let base = "";
  /** Written file (relative to base) → where its block is, "docs/x.md:LINE". */
  const origin = new Map<string, string>();

  before(() => {
    base = mkdtempSync(join(tmpdir(), "omni-docs-tsc-"));
    assert.ok(relative(PACKAGE_ROOT, base).startsWith(".."), "the folder is outside the repository");
    installPackage(base);
    execFileSync(process.execPath, [TSC, "--init"], { cwd: base, stdio: "ignore" });
    for (const doc of DOCS) {
      for (const block of extractCodeBlocks(readFileSync(join(PACKAGE_ROOT, doc), "utf8"))) {
        if (block.kind !== "ts") continue;
        const file = join(doc.replace(/[/.]/g, "_"), block.fileName ?? `block-${block.line}.ts`);
        mkdirSync(dirname(join(base, file)), { recursive: true });
        writeFileSync(join(base, file), block.code);
        origin.set(file, `${doc}:${block.line}`);
      }
    }
  });
  after(() => {
    if (base) rmSync(base, { recursive: true, force: true });
  });

  it("tsc --noEmit reports no error in any block", () => {
    assert.ok(origin.size >= 10, `found ${origin.size} TypeScript blocks`);
    const r = spawnSync(process.execPath, [TSC, "--noEmit", "-p", "."], { cwd: base, encoding: "utf8", timeout: 300_000 });
    // Each error line starts with the file it is in: name the document and line of its block.
    const errors = r.stdout
      .split("\n")
      .filter((l) => /error TS\d+/.test(l))
      .map((l) => {
        const file = /^(.*?)\(\d+,\d+\)/.exec(l)?.[1] ?? "";
        return `${origin.get(file) ?? file}: ${l}`;
      });
    assert.deepEqual(errors, [], `blocks that do not type-check:\n${errors.join("\n")}\n${r.stderr}`);
    assert.equal(r.status, 0, r.stdout + r.stderr);
  });
});
