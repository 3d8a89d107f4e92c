/**
 * The README's img2img example shows img2img: its edit really changes the image it starts from (the green
 * square becomes the prompt's red). Was `--strength 0.6`: 4 of 8 steps re-noised, and the output was the
 * same green square, a little duller (0 % red pixels). The two command lines are read from README.md and
 * run as written, through the CLI from source (test/docs/verbatim.test.ts runs them from an installed copy).
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { PNG } from "pngjs";
import { PACKAGE_ROOT } from "../../src/core/paths.js";

const CLI = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));
const TSX = join(PACKAGE_ROOT, "node_modules", "tsx", "dist", "esm", "index.mjs");

/** The arguments of a README command line `npx omni-diffusion ...` (double quotes group words). */
function argsOf(line: string): string[] {
  const words = [...line.matchAll(/"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2]!);
  assert.deepEqual(words.slice(0, 2), ["npx", "omni-diffusion"], line);
  return words.slice(2);
}

/** Share of pixels that read as `colour` (a clear red or green against the white background). */
function share(png: PNG, colour: "red" | "green"): number {
  let n = 0;
  for (let i = 0; i < png.data.length; i += 4) {
    const [r, g, b] = [png.data[i]!, png.data[i + 1]!, png.data[i + 2]!];
    if (colour === "red" ? r > 150 && g < 110 && b < 110 : g > 120 && r < 110 && b < 110) n++;
  }
  return n / (png.width * png.height);
}

test("the README's img2img example turns the green square red", { timeout: 180_000 }, () => {
  const readme = readFileSync(join(PACKAGE_ROOT, "README.md"), "utf8");
  const lines = readme.split("\n");
  const make = lines.find((l) => /^npx omni-diffusion generate .*--out squares\.png/.test(l));
  const edit = lines.find((l) => /^npx omni-diffusion generate .*--image squares-1\.png/.test(l));
  assert.ok(make && edit, "the README's generate and img2img lines");
  const dir = mkdtempSync(join(tmpdir(), "omni-readme-img2img-"));
  try {
    for (const line of [make, edit]) execFileSync(process.execPath, ["--import", TSX, CLI, ...argsOf(line)], { cwd: dir, stdio: "pipe", timeout: 120_000 });
    const before = PNG.sync.read(readFileSync(join(dir, "squares-1.png")));
    const after = PNG.sync.read(readFileSync(join(dir, "edited.png")));
    assert.ok(share(before, "green") > 0.15, `the starting image is a green square (${share(before, "green")})`);
    let diff = 0;
    for (let i = 0; i < before.data.length; i += 4) for (let c = 0; c < 3; c++) diff += Math.abs(after.data[i + c]! - before.data[i + c]!);
    const meanDiff = diff / (before.width * before.height * 3);
    assert.ok(share(after, "red") > 0.15, `the edit shows the prompt's red shape (${(100 * share(after, "red")).toFixed(1)} % red pixels, mean change ${meanDiff.toFixed(1)} of 255)`);
    assert.ok(share(after, "green") < 0.05, `and no longer the green square (${(100 * share(after, "green")).toFixed(1)} % green)`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
