import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const made: string[] = [];
// Each test file runs in a process of its own: its temp folders go when it exits (a CI machine runs the suite
// again and again; each run left ~80 MB of model copies, serve data and browser profiles in /tmp).
process.once("exit", () => {
  for (const dir of made) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // Still in use by a process that outlived the test (it says so itself): leave it.
    }
  }
});

/** A new folder under the OS temp dir, removed when this test process exits. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}
