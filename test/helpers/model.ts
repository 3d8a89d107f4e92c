import { cpSync } from "node:fs";
import { DEFAULT_MODEL_DIR } from "../../src/core/paths.js";
import { tempDir } from "./temp-dir.js";

export const MODEL_DIR = DEFAULT_MODEL_DIR;

/** A throwaway copy of the shipped model, to break on purpose. */
export function copyModel(): string {
  const dir = tempDir("omni-model-");
  cpSync(MODEL_DIR, dir, { recursive: true });
  return dir;
}
