import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The package root, whether running from src/ (tsx) or dist/ (built). */
export const PACKAGE_ROOT: string = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, "package.json")) && existsSync(join(dir, "models"))) return dir;
    dir = resolve(dir, "..");
  }
  return resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
})();

/** The model that ships with the package. */
export const DEFAULT_MODEL_DIR = join(PACKAGE_ROOT, "models", "tiny-shapes");

/** Models that ship with the package, by the name `model` / `--model` accepts from any working directory. */
export const BUILTIN_MODELS: Readonly<Record<string, string>> = Object.freeze({ "tiny-shapes": DEFAULT_MODEL_DIR });
