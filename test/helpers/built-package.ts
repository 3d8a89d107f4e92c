import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { PACKAGE_ROOT } from "../../src/core/paths.js";

/** Newest modification time of any file under `dir`, ms. */
function newest(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

/**
 * Makes sure dist/ (what `import "omni-diffusion"` loads, as an installed copy would) is built from the
 * current src/: `npm ci` builds it through `prepare`, but after an edit it is stale, and a test of the
 * package would then test old code. Rebuilds with tsc when any src/ file is newer than dist/index.js.
 */
export function ensureBuilt(): void {
  const marker = join(PACKAGE_ROOT, "dist", "index.js");
  const sources = [join(PACKAGE_ROOT, "src"), join(PACKAGE_ROOT, "tsconfig.json"), join(PACKAGE_ROOT, "tsconfig.build.json")];
  const newestSource = Math.max(...sources.map((p) => (statSync(p).isDirectory() ? newest(p) : statSync(p).mtimeMs)));
  if (existsSync(marker) && statSync(marker).mtimeMs >= newestSource && existsSync(join(PACKAGE_ROOT, "dist", "testing", "index.js"))) return;
  const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
  execFileSync(process.execPath, [tsc, "-p", "tsconfig.build.json"], { cwd: PACKAGE_ROOT, stdio: "inherit", timeout: 300_000 });
}
