#!/usr/bin/env node
// Runs the built CLI (npm ci builds dist/ through the prepare script).
import { existsSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";

const built = fileURLToPath(new URL("../dist/cli/main.js", import.meta.url));
if (!existsSync(built)) {
  console.error("omni-diffusion: dist/ is missing; run `npm run build` (npm ci does it through `prepare`).");
  process.exit(1);
}
await import(pathToFileURL(built).href);
