/**
 * A folder outside the repository where omni-diffusion is installed as `npm install <tarball>` would lay it
 * out, without the network, for the docs tests (verbatim.test.ts runs every block there, typecheck.test.ts
 * type-checks them there): the files `npm pack` would publish (its `files` list, built dist/ included) are
 * copied to <dir>/node_modules/omni-diffusion, with the dependencies npm would install beside them, in a
 * package with `"type": "module"`; node_modules/.bin holds the `omni-diffusion` and `tsx` commands.
 */
import { execFileSync } from "node:child_process";
import { chmodSync, cpSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { PACKAGE_ROOT } from "../../src/core/paths.js";
import { ensureBuilt } from "../helpers/built-package.js";

/**
 * What the docs ask a user to install next to omni-diffusion: tsx (README, to run TypeScript), @types/node
 * (with tsx, to type-check), the gRPC packages (wire-protocol.md's client), openai and replicate (server.md's
 * examples) and standardwebhooks (server.md's webhook receiver).
 */
export const DOCS_ASK_TO_INSTALL = ["tsx", "@types/node", "@grpc/grpc-js", "@grpc/proto-loader", "openai", "replicate", "standardwebhooks"] as const;

/** Installs the package (and {@link DOCS_ASK_TO_INSTALL}) into `dir`. */
export function installPackage(dir: string): void {
  ensureBuilt();
  const packed = JSON.parse(execFileSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], { cwd: PACKAGE_ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] })) as [{ files: { path: string }[] }];
  const pkg = join(dir, "node_modules", "omni-diffusion");
  for (const { path } of packed[0].files) {
    mkdirSync(dirname(join(pkg, path)), { recursive: true });
    cpSync(join(PACKAGE_ROOT, path), join(pkg, path));
  }
  // Its dependencies, where npm would put them for it (the repository's own install, which has them all).
  symlinkSync(join(PACKAGE_ROOT, "node_modules"), join(pkg, "node_modules"), "dir");
  for (const name of DOCS_ASK_TO_INSTALL) {
    mkdirSync(dirname(join(dir, "node_modules", name)), { recursive: true });
    symlinkSync(join(PACKAGE_ROOT, "node_modules", name), join(dir, "node_modules", name), "dir");
  }
  const bin = join(dir, "node_modules", ".bin");
  mkdirSync(bin);
  symlinkSync("../omni-diffusion/bin/omni-diffusion.js", join(bin, "omni-diffusion"));
  symlinkSync("../tsx/dist/cli.mjs", join(bin, "tsx"));
  chmodSync(join(pkg, "bin", "omni-diffusion.js"), 0o755);
  const dependencies = Object.fromEntries(["omni-diffusion", ...DOCS_ASK_TO_INSTALL].map((n) => [n, "*"]));
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "docs-check", private: true, type: "module", dependencies }, null, 2));
}
