import { statfs } from "node:fs/promises";
import { ConfigError } from "../errors/omni-error.js";

/** Bytes in decimal units, as disk sizes are sold and `df -H` prints them: `3.44 GB`. */
export function formatBytes(n: number): string {
  const units = ["B", "kB", "MB", "GB", "TB", "PB"];
  let v = n;
  let u = 0;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(2)} ${units[u]}`;
}

/** Bytes an unprivileged process may still write on the file system that holds `dir`. */
export async function freeBytes(dir: string): Promise<number> {
  const s = await statfs(dir);
  return s.bavail * s.bsize;
}

/**
 * Throws a {@link ConfigError} naming both numbers when `neededBytes` more do not fit on the file system of
 * `dir`: checked before a download starts, so a model bigger than the disk fails at once instead of filling it.
 */
export async function checkFreeSpace(dir: string, neededBytes: number, subject: string): Promise<void> {
  const free = await freeBytes(dir);
  if (neededBytes <= free) return;
  throw new ConfigError(
    `not enough free disk space in ${dir}: ${subject} needs ${formatBytes(neededBytes)} (${neededBytes} bytes) more, and ${formatBytes(free)} (${free} bytes) are free; ` +
      "free some space or pull into a folder on another disk with --dir",
    { field: "cacheDir", data: { dir, neededBytes, freeBytes: free } },
  );
}
