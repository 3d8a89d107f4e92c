/**
 * Every command in README.md and docs/*.md that installs omni-diffusion says how onnxruntime-node may install:
 * `ONNXRUNTIME_NODE_INSTALL=skip` (or `=cuda12`, or `--onnxruntime-node-install=...`). Without it,
 * onnxruntime-node's install script downloads CUDA libraries from NuGet, and without network access to
 * NuGet the install fails (the README's tarball line once lacked it). The commands are `npm ci` and `npm
 * install` lines of code blocks, and inline `npm install <path | tarball | omni-diffusion>`; an inline bare
 * `npm ci` is prose naming the step, not a command to paste.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { PACKAGE_ROOT } from "../../src/core/paths.js";
import { extractCodeBlocks } from "./code-blocks.js";

const DOCS = ["README.md", ...readdirSync(join(PACKAGE_ROOT, "docs")).filter((f) => f.endsWith(".md")).sort().map((f) => `docs/${f}`)];
const NPM = /\bnpm\s+(ci|install|i)\b([^&|;#]*)/;
const SAYS_HOW = /ONNXRUNTIME_NODE_INSTALL=\S+|--onnxruntime-node-install=\S+/;

/** Whether the npm command `cmd` (from a match of NPM) installs this package or its dependencies. */
function installsThisPackage(sub: string, rest: string, inline: boolean): boolean {
  if (sub === "ci") return !inline || rest.trim() !== "";
  const args = rest.trim().split(/\s+/).filter((a) => a && !a.startsWith("-"));
  if (!args.length) return !inline; // `npm install` in a clone installs the dependencies, onnxruntime-node among them
  return args.some((a) => /^[./~]|\.tgz$|^omni-diffusion(@|$)/.test(a));
}

/** Every install command of `markdown`, with its line. */
function installCommands(markdown: string): { line: number; text: string }[] {
  const found: { line: number; text: string }[] = [];
  for (const block of extractCodeBlocks(markdown)) {
    if (block.kind !== "sh") continue;
    block.code.split("\n").forEach((l, i) => {
      const m = NPM.exec(l);
      if (m && installsThisPackage(m[1]!, m[2]!, false)) found.push({ line: block.line + 1 + i, text: l.trim() });
    });
  }
  // Inline code spans outside fenced blocks (fences removed first, line numbers kept).
  const prose = markdown.replace(/^(\s*)(`{3,}|~{3,})[\s\S]*?^\1\2\s*$/gm, (b) => b.replace(/[^\n]/g, " "));
  for (const span of prose.matchAll(/`([^`]+)`/g)) {
    const m = NPM.exec(span[1]!.replace(/\s+/g, " "));
    if (m && installsThisPackage(m[1]!, m[2]!, true)) found.push({ line: prose.slice(0, span.index).split("\n").length, text: span[1]! });
  }
  return found;
}

test("the checker finds the install commands it should", () => {
  const md = ["`npm ci` is prose", "install it (`npm install /path/to/omni-diffusion`)", "`npm install -D tsx`", "```sh", "npm ci && npx omni-diffusion info", "```", "`npm i ./omni-diffusion-0.1.0.tgz`"].join("\n");
  assert.deepEqual(
    installCommands(md).map((c) => c.line),
    [5, 2, 7],
  );
});

test("every command that installs omni-diffusion sets ONNXRUNTIME_NODE_INSTALL", () => {
  const missing: string[] = [];
  let seen = 0;
  for (const doc of DOCS) {
    for (const c of installCommands(readFileSync(join(PACKAGE_ROOT, doc), "utf8"))) {
      seen++;
      if (!SAYS_HOW.test(c.text)) missing.push(`${doc}:${c.line}: ${c.text}`);
    }
  }
  assert.ok(seen >= 2, `found ${seen} install commands`);
  assert.deepEqual(missing, [], `install commands without ONNXRUNTIME_NODE_INSTALL:\n${missing.join("\n")}`);
});
