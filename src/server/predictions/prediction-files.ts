import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** The output PNGs of predictions, by prediction id and file name. */
export interface PredictionFiles {
  write(id: string, name: string, png: Buffer): void;
  /** The file, or null when it is gone. */
  read(id: string, name: string): Buffer | null;
  /** Removes every file of a prediction (idempotent). */
  remove(id: string): void;
}

/** In memory, for a server without a data dir (`startServer()` without `dataDir`). */
export class MemoryFiles implements PredictionFiles {
  readonly #files = new Map<string, Map<string, Buffer>>();

  write(id: string, name: string, png: Buffer): void {
    let m = this.#files.get(id);
    if (!m) this.#files.set(id, (m = new Map()));
    m.set(name, png);
  }

  read(id: string, name: string): Buffer | null {
    return this.#files.get(id)?.get(name) ?? null;
  }

  remove(id: string): void {
    this.#files.delete(id);
  }
}

/**
 * Files beside the database: `<dir>/<id>/<name>`. Writes are synchronous so a result is on disk before the
 * row that points at it commits (a crash in between leaves an orphan file, never a dangling URL).
 */
export class DiskFiles implements PredictionFiles {
  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true });
  }

  write(id: string, name: string, png: Buffer): void {
    mkdirSync(join(this.dir, id), { recursive: true });
    writeFileSync(join(this.dir, id, name), png);
  }

  read(id: string, name: string): Buffer | null {
    try {
      return readFileSync(join(this.dir, id, name));
    } catch {
      return null;
    }
  }

  remove(id: string): void {
    rmSync(join(this.dir, id), { recursive: true, force: true });
  }
}
