import { cpSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_MODEL_DIR } from "../../src/core/paths.js";

export const MODEL_DIR = DEFAULT_MODEL_DIR;

/** A throwaway copy of the shipped model, to break on purpose. */
export function copyModel(): string {
  const dir = mkdtempSync(join(tmpdir(), "omni-model-"));
  cpSync(MODEL_DIR, dir, { recursive: true });
  return dir;
}
