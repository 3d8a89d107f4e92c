import { TransportError } from "../errors/omni-error.js";

/** One file of a repository as `GET /api/models/{id}/revision/{rev}?blobs=true` lists it. */
export interface HubSibling {
  /** Path inside the repository, `/`-separated. */
  rfilename: string;
  /** Size in bytes (of the real file for LFS files). */
  size?: number;
  /** Git blob sha1; for LFS files that of the pointer. */
  blobId?: string;
  /** Present for files stored in LFS (or Xet): the real content's sha256 and size. */
  lfs?: { sha256: string; size: number; pointerSize?: number };
}

/** A path as an error message shows it: JSON-quoted (a NUL or a newline stays visible) and cut short. */
function shown(p: string): string {
  const q = JSON.stringify(p);
  return q.length > 200 ? `${q.slice(0, 197)}..."` : q;
}

/** A size a listing may give: a whole, non-negative number of bytes. */
function isByteCount(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/** A path that stays inside the snapshot folder on any OS: relative, `/`-separated, no empty, `.` or `..` part. */
function isInsidePath(p: string): boolean {
  return !p.startsWith("/") && !p.includes("\\") && !/^[A-Za-z]:/.test(p) && p.split("/").every((s) => s !== "" && s !== "." && s !== "..");
}

/**
 * Checks a Hub listing's `siblings` for what no git repository can hold and what would make the puller misbehave:
 * a path with a NUL byte or another control character, a path outside the repository, a size that is not a whole
 * number of bytes, a path listed twice, a path that is both a file and a folder. Returns them typed; throws one
 * non-retryable {@link TransportError} naming the first fault and its field (`siblings[i].size`), never a raw
 * file-system error later.
 */
export function checkListing(subject: string, siblings: readonly unknown[]): HubSibling[] {
  const fail = (field: string, what: string, file?: string): never => {
    throw new TransportError(`the Hub's listing of ${subject} is malformed: ${what}`, { retryable: false, data: { field, file } });
  };
  const files = new Map<string, number>();
  const out: HubSibling[] = [];
  siblings.forEach((raw, i) => {
    const s = raw as Partial<HubSibling> | null;
    const at = `siblings[${i}]`;
    if (!s || typeof s !== "object" || typeof s.rfilename !== "string") return fail(`${at}.rfilename`, `${at}.rfilename is missing or not a string`);
    const p = s.rfilename;
    if (p.includes("\0")) fail(`${at}.rfilename`, `${at}.rfilename ${shown(p)} has a NUL byte`, p);
    if (/[\x01-\x1f\x7f]/.test(p)) fail(`${at}.rfilename`, `${at}.rfilename ${shown(p)} has a control character`, p);
    if (!isInsidePath(p)) fail(`${at}.rfilename`, `${at}.rfilename ${shown(p)} is not a relative path inside the repository`, p);
    if (s.size !== undefined && !isByteCount(s.size)) fail(`${at}.size`, `${at}.size of ${p} is ${JSON.stringify(s.size)}, not a whole number of bytes`, p);
    if (s.blobId !== undefined && typeof s.blobId !== "string") fail(`${at}.blobId`, `${at}.blobId of ${p} is not a string`, p);
    if (s.lfs !== undefined && s.lfs !== null) {
      if (typeof s.lfs !== "object") fail(`${at}.lfs`, `${at}.lfs of ${p} is not an object`, p);
      if (!isByteCount(s.lfs.size)) fail(`${at}.lfs.size`, `${at}.lfs.size of ${p} is ${JSON.stringify(s.lfs.size)}, not a whole number of bytes`, p);
    }
    const twice = files.get(p);
    if (twice !== undefined) fail(`${at}.rfilename`, `${p} is listed twice (siblings[${twice}] and ${at})`, p);
    files.set(p, i);
    out.push(s as HubSibling);
  });
  // A file and a folder of the same name: the second could only be written by replacing the first.
  for (const p of files.keys()) {
    for (let slash = p.indexOf("/"); slash > 0; slash = p.indexOf("/", slash + 1)) {
      const dir = p.slice(0, slash);
      if (files.has(dir)) fail(`siblings[${files.get(dir)}].rfilename`, `${dir} is listed as a file and as a folder (${p})`, dir);
    }
  }
  return out;
}
