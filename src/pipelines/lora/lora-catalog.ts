import { readdirSync, statSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import type { LoraRef, LoraSpec } from "../../core/weights.js";
import { ConfigError, NotFoundError } from "../../errors/omni-error.js";
import { SafetensorsFile } from "./safetensors.js";

/** One LoRA of a `--loras-dir`: its name (the file name without `.safetensors`) and file. */
export interface LoraEntry {
  name: string;
  path: string;
  bytes: number;
}

/** Folders deeper than this under the LoRA folder are not scanned (A1111 users keep one level of subfolders). */
const MAX_DEPTH = 4;
/** A folder with more files than this is a wrong path (a home directory), not a LoRA collection. */
const MAX_ENTRIES = 10_000;

/**
 * The LoRAs of a folder (`--loras-dir`, config `lorasDir`), scanned recursively for `*.safetensors`: the name is
 * the file name without the extension, as A1111's `<lora:name:weight>` tags spell it. An unknown name rescans once
 * (a file dropped in after start-up is found) before it is a NotFoundError naming it.
 */
export class LoraCatalog {
  readonly dir: string;
  #entries = new Map<string, LoraEntry>();

  constructor(dir: string) {
    this.dir = resolve(dir);
    this.rescan();
  }

  /** Reads the folder again; returns the LoRAs found. */
  rescan(): LoraEntry[] {
    let st;
    try {
      st = statSync(this.dir);
    } catch {
      throw new ConfigError(`LoRA folder ${this.dir} does not exist`, { field: "lorasDir" });
    }
    if (!st.isDirectory()) throw new ConfigError(`LoRA folder ${this.dir} is not a folder`, { field: "lorasDir" });
    const found = new Map<string, LoraEntry>();
    let seen = 0;
    const walk = (dir: string, depth: number): void => {
      const names = readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      for (const e of names) {
        if (++seen > MAX_ENTRIES) throw new ConfigError(`LoRA folder ${this.dir} holds more than ${MAX_ENTRIES} entries; point --loras-dir at the LoRAs themselves`, { field: "lorasDir" });
        const path = join(dir, e.name);
        if (e.isDirectory() && depth < MAX_DEPTH) walk(path, depth + 1);
        else if (e.isFile() && e.name.endsWith(".safetensors")) {
          const name = e.name.slice(0, -".safetensors".length);
          // The first in sorted order wins a name two subfolders share; the listing shows which file that is.
          if (!found.has(name)) found.set(name, { name, path, bytes: statSync(path).size });
        }
      }
    };
    walk(this.dir, 0);
    this.#entries = found;
    return this.list();
  }

  list(): LoraEntry[] {
    return [...this.#entries.values()];
  }

  /** The file of LoRA `name` (rescanning once when unknown); a NotFoundError naming it and some known ones. */
  resolve(name: string): string {
    let e = this.#entries.get(name);
    if (!e) {
      this.rescan();
      e = this.#entries.get(name);
    }
    if (!e) {
      const known = this.list().map((l) => l.name);
      throw new NotFoundError(`unknown LoRA "${name}"; ${known.length ? `known: ${known.slice(0, 10).join(", ")}${known.length > 10 ? ", …" : ""}` : `${this.dir} holds none`}`, {
        data: { field: "loras", lora: name, known: known.slice(0, 50) },
      });
    }
    return e.path;
  }

  /** `refs` with their files, as loadPipeline takes them. */
  specs(refs: readonly LoraRef[]): LoraSpec[] {
    return refs.map((r) => ({ ...r, path: this.resolve(r.name) }));
  }

  /** The safetensors `__metadata__` of LoRA `name` (kohya's `ss_*` training notes), header only; {} when unreadable. */
  metadata(name: string): Record<string, string> {
    try {
      const f = SafetensorsFile.open(this.resolve(name));
      f.close();
      return f.metadata;
    } catch {
      return {};
    }
  }

  /** A path relative to the folder, for listings that should not disclose the server's layout. */
  relativePath(entry: LoraEntry): string {
    return relative(this.dir, entry.path);
  }
}

/** The `(name) => path` resolver of a LoRA folder, as the model cache takes it. */
export function loraResolver(dir: string): (name: string) => string {
  const catalog = new LoraCatalog(dir);
  return (name) => catalog.resolve(name);
}
