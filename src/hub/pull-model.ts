import { copyFile, mkdir, readFile, rename, stat, symlink, unlink, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { HubNotFoundError, ModelLayoutError, TransportError, ValidationError } from "../errors/omni-error.js";
import type { Clock } from "../utils/clock.js";
import { checkFreeSpace } from "./disk-space.js";
import { downloadBlob, type ExpectedBlob } from "./download-blob.js";
import { HubClient, type HubSibling } from "./hub-client.js";
import { DEFAULT_STALL_TIMEOUT_MS, StallWatch } from "./stall-watch.js";
import { COMMIT_SHA, DEFAULT_REVISION, hubCacheDir, hubEndpoint, hubToken, isRepoId, repoCacheDir, type HubEnv } from "../core/hub-cache.js";
import { checkOnnxLayout, selectPipelineFiles } from "./onnx-layout.js";

/** Progress of a pull, in bytes of the files it needs (cached files count as done at once). */
export interface PullProgress {
  /** The file being fetched. */
  file: string;
  doneBytes: number;
  totalBytes: number;
  filesDone: number;
  filesTotal: number;
}

export interface PullOptions {
  /** Branch, tag or commit (default `main`). */
  revision?: string;
  /** Hub cache folder (default `$HF_HUB_CACHE`, else `$HF_HOME/hub`). */
  cacheDir?: string;
  /** Hub base URL (default `$HF_ENDPOINT`, else https://huggingface.co). */
  endpoint?: string;
  /** Access token for gated or private repositories (default `$HF_TOKEN`, else the token file of `huggingface-cli login`). */
  token?: string;
  /** Times one file's download is resumed within this pull after its connection broke (default 3). */
  maxResumes?: number;
  /**
   * Give up when the Hub sends nothing for this long, in milliseconds (default 60,000): a waiting listing, an answer
   * that never starts, a body that stops. A partial file is kept and the next pull resumes it.
   */
  stallTimeoutMs?: number;
  /** Time source for the no-progress deadline (default the system clock; tests pass a manual one). */
  clock?: Clock;
  /** Environment read for the defaults above (default `process.env`). */
  env?: HubEnv;
  onProgress?: (p: PullProgress) => void;
  signal?: AbortSignal;
}

/** Largest model_index.json accepted (a diffusers one is under 1 KB; it is read into memory whole). */
const MAX_MODEL_INDEX_BYTES = 1024 * 1024;

export interface PullResult {
  repoId: string;
  revision: string;
  commit: string;
  /** The snapshot folder: a model folder for `--model`, also found by `--model <repoId>`. */
  snapshotDir: string;
  /** Repository paths of the files in the snapshot. */
  files: string[];
  /** Bytes fetched over the network by this pull (0 when everything was cached; resumed bytes are not counted again). */
  downloadedBytes: number;
}

/** A repository path that stays inside the snapshot folder. */
function safeRepoPath(p: string): boolean {
  return !p.startsWith("/") && !p.includes("\\") && p.split("/").every((s) => s !== "" && s !== "." && s !== "..");
}

/** The cache entry a listed file becomes: blob name (etag), size and the checksum to verify (sizes were checked by checkListing). */
function expectedBlob(repo: string, s: HubSibling): ExpectedBlob {
  if (s.lfs && typeof s.lfs.sha256 === "string" && /^[0-9a-f]{64}$/.test(s.lfs.sha256)) {
    return { path: s.rfilename, etag: s.lfs.sha256, size: s.lfs.size, sha256: s.lfs.sha256 };
  }
  if (s.blobId && /^[0-9a-f]{40}$/.test(s.blobId) && s.size !== undefined) {
    return { path: s.rfilename, etag: s.blobId, size: s.size!, gitSha1: s.blobId };
  }
  throw new TransportError(`the Hub's listing of ${repo} gives no size and checksum for ${s.rfilename}`, { retryable: false, data: { file: s.rfilename } });
}

/** Size of a file, 0 when it does not exist. */
async function sizeOf(path: string): Promise<number> {
  return (await stat(path).catch(() => null))?.size ?? 0;
}

/** Bytes still to download for `blobs`: each blob once, less what a cached or partial file already holds. */
async function bytesStillNeeded(storage: string, blobs: readonly ExpectedBlob[]): Promise<number> {
  const unique = new Map(blobs.map((b) => [b.etag, b]));
  let needed = 0;
  for (const b of unique.values()) {
    const blobPath = join(storage, "blobs", b.etag);
    if (existsSync(blobPath)) continue;
    const partial = await sizeOf(`${blobPath}.incomplete`);
    needed += partial <= b.size ? b.size - partial : b.size;
  }
  return needed;
}

/** Points `snapshots/<commit>/<path>` at its blob with a relative symlink, as huggingface_hub does (a copy where links fail). */
async function linkIntoSnapshot(blobPath: string, pointer: string): Promise<void> {
  await mkdir(dirname(pointer), { recursive: true });
  await unlink(pointer).catch(() => undefined);
  try {
    await symlink(relative(dirname(pointer), blobPath), pointer);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EACCES") throw err;
    await copyFile(blobPath, pointer);
  }
}

/**
 * Downloads the files a diffusers ONNX export needs from the Hugging Face Hub into the Hub cache, in
 * huggingface_hub's layout, and returns the snapshot folder. Already cached blobs are not fetched again;
 * a partly downloaded one is resumed. Refuses a repository that is not an ONNX diffusers layout before
 * downloading anything but its listing and model_index.json.
 *
 * @example
 * ```ts
 * import { pullModel, DiffusionEngine } from "omni-diffusion";
 * const { snapshotDir } = await pullModel("onnxruntime/sd-turbo");
 * const engine = await DiffusionEngine.create({ model: "onnxruntime/sd-turbo" }); // found in the cache
 * ```
 */
export async function pullModel(repoId: string, opts: PullOptions = {}): Promise<PullResult> {
  if (!isRepoId(repoId)) throw new ValidationError(`"${repoId}" is not a Hugging Face model id (owner/name)`, { field: "repoId" });
  const env = opts.env ?? process.env;
  const revision = opts.revision ?? DEFAULT_REVISION;
  if (!safeRepoPath(revision)) throw new ValidationError(`"${revision}" is not a revision (a branch, tag or commit)`, { field: "revision" });
  const cacheDir = opts.cacheDir ?? hubCacheDir(env);
  const watch = new StallWatch(opts.stallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS, opts.clock);
  watch.fetching(`the listing of ${repoId}@${revision}`);
  const signal = opts.signal ? AbortSignal.any([opts.signal, watch.signal]) : watch.signal;
  const client = new HubClient({ endpoint: opts.endpoint ?? hubEndpoint(env), token: opts.token ?? hubToken(env), signal, onActivity: () => watch.progress() });
  try {
    return await pullWith(client, repoId, revision, cacheDir, watch, { ...opts, signal });
  } finally {
    watch.stop();
  }
}

async function pullWith(client: HubClient, repoId: string, revision: string, cacheDir: string, watch: StallWatch, opts: PullOptions): Promise<PullResult> {
  const info = await client.repoInfo(repoId, revision);
  if (!COMMIT_SHA.test(info.sha)) throw new TransportError(`the Hub gave "${info.sha}" as the commit of ${repoId}@${revision}`, { retryable: false });
  const commit = info.sha;
  const listed = new Map(info.siblings.map((s) => [s.rfilename, s]));
  checkOnnxLayout(`${repoId}@${revision}`, [...listed.keys()]);

  const storage = repoCacheDir(repoId, cacheDir);
  const snapshotDir = join(storage, "snapshots", commit);
  let downloadedBytes = 0;
  let doneBytes = 0;
  let filesDone = 0;
  let totalBytes = 0;
  let filesTotal = 1;

  const fetchOne = async (path: string): Promise<void> => {
    const sibling = listed.get(path);
    if (!sibling) throw new HubNotFoundError(`${repoId}@${revision} does not list ${path}`, { data: { file: path } });
    const blob = expectedBlob(repoId, sibling);
    const blobPath = join(storage, "blobs", blob.etag);
    await mkdir(dirname(blobPath), { recursive: true });
    const cached = existsSync(blobPath);
    let fileBytes = 0;
    opts.onProgress?.({ file: path, doneBytes, totalBytes, filesDone, filesTotal });
    if (!cached) {
      watch.fetching(path, true);
      downloadedBytes += await downloadBlob(client, repoId, commit, blob, blobPath, {
        maxResumes: opts.maxResumes ?? 3,
        signal: opts.signal,
        onActivity: () => watch.progress(),
        onBytes: (n) => {
          doneBytes += n - fileBytes;
          fileBytes = n;
          opts.onProgress?.({ file: path, doneBytes, totalBytes, filesDone, filesTotal });
        },
      });
    }
    doneBytes += blob.size - fileBytes;
    filesDone++;
    await linkIntoSnapshot(blobPath, join(snapshotDir, ...path.split("/")));
    opts.onProgress?.({ file: path, doneBytes, totalBytes, filesDone, filesTotal });
  };

  // model_index.json first: it says which components the rest of the download covers.
  totalBytes = expectedBlob(repoId, listed.get("model_index.json")!).size;
  if (totalBytes > MAX_MODEL_INDEX_BYTES) {
    throw new ModelLayoutError(`${repoId}@${revision}: model_index.json is listed at ${totalBytes} bytes; a diffusers model_index.json is under 1 KB (refusing over 1 MiB)`);
  }
  await fetchOne("model_index.json");
  let modelIndex: Record<string, unknown>;
  try {
    modelIndex = JSON.parse(await readFile(join(snapshotDir, "model_index.json"), "utf8")) as Record<string, unknown>;
  } catch (err) {
    throw new ModelLayoutError(`${repoId}@${revision}: model_index.json is not valid JSON (${(err as Error).message})`, { cause: err });
  }
  const files = selectPipelineFiles([...listed.keys()], modelIndex);
  const rest = files.filter((f) => f !== "model_index.json");
  filesTotal = files.length;
  const restBlobs = rest.map((f) => expectedBlob(repoId, listed.get(f)!));
  totalBytes += restBlobs.reduce((n, b) => n + b.size, 0);
  // Before the first large file: a model bigger than the free space fails now, not when the disk is full.
  await checkFreeSpace(storage, await bytesStillNeeded(storage, restBlobs), `${repoId}@${revision}`);
  for (const f of rest) await fetchOne(f);

  // refs/<branch or tag> → commit, written atomically so a reader never sees half a sha.
  if (revision !== commit) {
    const ref = join(storage, "refs", ...revision.split("/"));
    await mkdir(dirname(ref), { recursive: true });
    const tmp = `${ref}.${process.pid}.tmp`;
    await writeFile(tmp, commit);
    await rename(tmp, ref);
  }
  return { repoId, revision, commit, snapshotDir, files, downloadedBytes };
}
