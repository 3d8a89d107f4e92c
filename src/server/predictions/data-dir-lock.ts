import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ConfigError } from "../../errors/omni-error.js";

/** True while a process with this pid exists (signal 0 checks without sending anything). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to another user; only ESRCH means gone.
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * One `serve` per data dir: a `serve.lock` file holding the owner's pid, created exclusively. A lock whose
 * pid is gone (a serve killed with SIGKILL never removes it) is stale and taken over; a live one is a
 * ConfigError naming `--data-dir`. Two servers on one store would both run the same queued jobs.
 */
export class DataDirLock {
  readonly #path: string;
  #held = true;

  private constructor(path: string) {
    this.#path = path;
  }

  /** Takes the lock of `dir` (created if missing) or throws a ConfigError. */
  static acquire(dir: string): DataDirLock {
    mkdirSync(dir, { recursive: true });
    const path = join(dir, "serve.lock");
    for (let tries = 0; tries < 3; tries++) {
      try {
        writeFileSync(path, `${process.pid}\n`, { flag: "wx" });
        return new DataDirLock(path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") {
          throw new ConfigError(`cannot lock the data dir ${dir}: ${(err as Error).message}; choose another with --data-dir`, { field: "dataDir", cause: err });
        }
      }
      const owner = Number.parseInt(readFileSync(path, "utf8").trim(), 10);
      if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && alive(owner)) {
        throw new ConfigError(`the data dir ${dir} is in use by another serve (pid ${owner}); give each serve its own --data-dir`, { field: "dataDir", data: { pid: owner } });
      }
      if (owner === process.pid) {
        throw new ConfigError(`the data dir ${dir} is already open in this process; give each server its own --data-dir`, { field: "dataDir" });
      }
      rmSync(path, { force: true }); // stale: its owner died without cleaning up
    }
    throw new ConfigError(`cannot lock the data dir ${dir}: the lock kept changing hands; choose another with --data-dir`, { field: "dataDir" });
  }

  /** Removes the lock file (idempotent). */
  release(): void {
    if (!this.#held) return;
    this.#held = false;
    rmSync(this.#path, { force: true });
  }
}

/**
 * Throws the ConfigError {@link DataDirLock.acquire} would, without taking the lock: `serve` checks before it
 * starts any worker process, so a second serve on a locked dir fails in one line at once.
 */
export function assertDataDirFree(dir: string): void {
  let owner: number;
  try {
    owner = Number.parseInt(readFileSync(join(dir, "serve.lock"), "utf8").trim(), 10);
  } catch {
    return; // no lock file
  }
  if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && alive(owner)) {
    throw new ConfigError(`the data dir ${dir} is in use by another serve (pid ${owner}); give each serve its own --data-dir`, { field: "dataDir", data: { pid: owner } });
  }
}
