import { existsSync, readFileSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";

/**
 * The Hugging Face cache layout, as huggingface_hub writes it (`constants.py`, `file_download.py`):
 *
 * ```text
 * $HF_HUB_CACHE (default $HF_HOME/hub, $HF_HOME defaulting to $XDG_CACHE_HOME/huggingface or ~/.cache/huggingface)
 * └── models--<owner>--<name>/
 *     ├── blobs/<etag>                   file contents; etag = LFS sha256, or the git blob sha1 for small files
 *     ├── blobs/<etag>.incomplete        a partial download, resumed with a Range request
 *     ├── refs/<revision>                the commit sha a branch or tag pointed at when it was pulled
 *     └── snapshots/<commit>/<path>      relative symlinks into blobs/
 * ```
 *
 * Sharing it means a model pulled by `omni-diffusion pull` is seen by Python tools and the other way round.
 */

/** Environment variables this module reads (injectable for tests). */
export type HubEnv = Record<string, string | undefined>;

/** The default Hub; `HF_ENDPOINT` overrides it (mirrors, private hubs, tests). */
export const DEFAULT_HUB_ENDPOINT = "https://huggingface.co";

/** The revision pulled when none is given. */
export const DEFAULT_REVISION = "main";

/** A full 40-hex commit id (a revision that needs no `refs/` lookup). */
export const COMMIT_SHA = /^[0-9a-f]{40}$/;

/** A Hub model id: `owner/name` (letters, digits, `-`, `_`, `.`; no `--` or `..`, as huggingface_hub validates). */
const REPO_ID = /^[\w.-]{1,96}\/[\w.-]{1,96}$/;

/** `owner/name[@revision]`, split and checked. */
export interface RepoSpec {
  repoId: string;
  revision: string;
}

function expandHome(p: string): string {
  return p === "~" || p.startsWith("~/") ? join(homedir(), p.slice(1)) : p;
}

/** $HF_HOME, default `$XDG_CACHE_HOME/huggingface` or `~/.cache/huggingface`. */
export function hfHome(env: HubEnv = process.env): string {
  return resolve(expandHome(env.HF_HOME || join(env.XDG_CACHE_HOME || join(homedir(), ".cache"), "huggingface")));
}

/** The hub cache folder: `$HF_HUB_CACHE`, the legacy `$HUGGINGFACE_HUB_CACHE`, else `$HF_HOME/hub`. */
export function hubCacheDir(env: HubEnv = process.env): string {
  const explicit = env.HF_HUB_CACHE || env.HUGGINGFACE_HUB_CACHE;
  return explicit ? resolve(expandHome(explicit)) : join(hfHome(env), "hub");
}

/** `$HF_ENDPOINT` without a trailing slash, else the public Hub. */
export function hubEndpoint(env: HubEnv = process.env): string {
  return (env.HF_ENDPOINT || DEFAULT_HUB_ENDPOINT).replace(/\/+$/, "");
}

/** The access token: `$HF_TOKEN`, the legacy `$HUGGING_FACE_HUB_TOKEN`, else the file `huggingface-cli login` writes. */
export function hubToken(env: HubEnv = process.env): string | undefined {
  const fromEnv = (env.HF_TOKEN || env.HUGGING_FACE_HUB_TOKEN)?.trim();
  if (fromEnv) return fromEnv;
  const file = env.HF_TOKEN_PATH ? expandHome(env.HF_TOKEN_PATH) : join(hfHome(env), "token");
  try {
    return readFileSync(file, "utf8").trim() || undefined;
  } catch {
    return undefined;
  }
}

/** True when `id` has the shape of a Hub model id (`owner/name`). */
export function isRepoId(id: string): boolean {
  return REPO_ID.test(id) && !id.includes("--") && !id.includes("..") && !id.endsWith(".git");
}

/** Splits `owner/name@revision`; null when `spec` is not shaped like a Hub model id. */
export function parseRepoSpec(spec: string): RepoSpec | null {
  const at = spec.indexOf("@");
  const repoId = at < 0 ? spec : spec.slice(0, at);
  const revision = at < 0 ? DEFAULT_REVISION : spec.slice(at + 1);
  if (!isRepoId(repoId) || !revision || revision.includes("..")) return null;
  return { repoId, revision };
}

/** `models--owner--name`, huggingface_hub's `repo_folder_name` for a model repository. */
export function repoFolderName(repoId: string): string {
  return ["models", ...repoId.split("/")].join("--");
}

/** Where a repository lives in the cache. */
export function repoCacheDir(repoId: string, cacheDir: string = hubCacheDir()): string {
  return join(cacheDir, repoFolderName(repoId));
}

/** The commit a revision resolves to from the cache alone (`refs/<revision>`), or null. */
export function cachedCommit(repoId: string, revision: string, cacheDir: string = hubCacheDir()): string | null {
  if (COMMIT_SHA.test(revision)) return revision;
  try {
    const sha = readFileSync(join(repoCacheDir(repoId, cacheDir), "refs", revision), "utf8").trim();
    return COMMIT_SHA.test(sha) ? sha : null;
  } catch {
    return null;
  }
}

/** The snapshot folder of a pulled revision, or null when it is not in the cache. */
export function findCachedSnapshot(repoId: string, revision: string = DEFAULT_REVISION, cacheDir: string = hubCacheDir()): string | null {
  const sha = cachedCommit(repoId, revision, cacheDir);
  if (!sha) return null;
  const dir = join(repoCacheDir(repoId, cacheDir), "snapshots", sha);
  return existsSync(dir) && statSync(dir).isDirectory() ? dir : null;
}
