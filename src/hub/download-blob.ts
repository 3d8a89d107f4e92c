import { createHash, type Hash } from "node:crypto";
import { createReadStream, createWriteStream, existsSync } from "node:fs";
import { rename, stat, truncate, unlink } from "node:fs/promises";
import { once } from "node:events";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { IntegrityError, OmniError, TransportError } from "../errors/omni-error.js";
import { abortReason, discard } from "./bounded-read.js";
import type { HubClient, HubFileResponse } from "./hub-client.js";

/** What the Hub's file listing promises about one file. */
export interface ExpectedBlob {
  /** Path inside the repository. */
  path: string;
  /** Blob name in the cache: the LFS sha256, or the git blob sha1 of a small file. */
  etag: string;
  size: number;
  /** Set for LFS files: the content's sha256 (checked). */
  sha256?: string;
  /** Set for small files: the git blob sha1 (checked, as `git hash-object` computes it). */
  gitSha1?: string;
}

export interface DownloadBlobOptions {
  /** Bytes of this file on disk so far (resumed bytes included); called often. */
  onBytes?: (bytes: number) => void;
  /** How many times a download that broke off after making progress is resumed within this call. */
  maxResumes?: number;
  /** Called on any progress (an answer, a chunk received, a chunk of a resumed file hashed): feeds a no-progress deadline. */
  onActivity?: () => void;
  signal?: AbortSignal;
}

/** Size of a file, 0 when it does not exist. */
async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

/** Hasher for a blob: sha256 of the content (LFS) or git's sha1 over `blob <size>\0` + content. */
function newHash(blob: ExpectedBlob): Hash {
  if (blob.sha256) return createHash("sha256");
  const h = createHash("sha1");
  h.update(`blob ${blob.size}\0`);
  return h;
}

async function hashPrefix(hash: Hash, path: string, onActivity?: () => void): Promise<void> {
  for await (const chunk of createReadStream(path)) {
    hash.update(chunk as Buffer);
    onActivity?.();
  }
}

/**
 * Refuses an answer whose announced length cannot be the listed file (from byte `from` on): a hub that says
 * 300 MiB for a file listed at 1 KiB is stopped before its first byte reaches the disk.
 */
function checkAnnounced(blob: ExpectedBlob, res: HubFileResponse, from: number): void {
  const want = blob.size - from;
  const range = from > 0 ? ` from byte ${from}` : "";
  const listing = from > 0 ? `the listing leaves ${want} of ${blob.size}` : `the listing ${blob.size}`;
  if (res.contentLength !== undefined && res.contentLength !== want) {
    throw new IntegrityError(`${blob.path}: the Hub announced ${res.contentLength} bytes (Content-Length)${range}, ${listing}; nothing more was written, pull again`, {
      data: { file: blob.path, contentLength: res.contentLength, expectedSize: blob.size, from },
    });
  }
  if (res.rangeTotal !== undefined && res.rangeTotal !== blob.size) {
    throw new IntegrityError(`${blob.path}: the Hub gives the file ${res.rangeTotal} bytes (Content-Range), the listing ${blob.size}; pull again`, {
      data: { file: blob.path, rangeTotal: res.rangeTotal, expectedSize: blob.size },
    });
  }
}

/**
 * Downloads one file of `repoId@commit` to `blobPath`, the way huggingface_hub fills its cache: bytes go to
 * `<blobPath>.incomplete`, a later call resumes it with a `Range` request (a server that ignores the range
 * answers 200 and the file restarts), and only a file whose size and checksum match the listing is renamed
 * into place; resolves with the bytes fetched over the network. Never more than the listed size reaches the disk:
 * an answer whose `Content-Length` disagrees with the listing, or a body that runs past it, stops at once. A
 * checksum or size mismatch deletes the partial file and throws {@link IntegrityError}; a broken connection keeps
 * it and throws a retryable {@link TransportError} saying that pulling again resumes.
 */
export async function downloadBlob(client: HubClient, repoId: string, commit: string, blob: ExpectedBlob, blobPath: string, opts: DownloadBlobOptions = {}): Promise<number> {
  if (existsSync(blobPath)) return 0;
  let fetched = 0;
  const partial = `${blobPath}.incomplete`;
  let have = await sizeOf(partial);
  if (have > blob.size) {
    await truncate(partial, 0);
    have = 0;
  }
  let hash = newHash(blob);
  if (have > 0) await hashPrefix(hash, partial, opts.onActivity);
  opts.onBytes?.(have);
  for (let resumes = 0; have < blob.size; ) {
    const res = await client.openFile(repoId, commit, blob.path, have);
    const resumed = have > 0 && res.status === 206 && res.rangeStart === have;
    try {
      checkAnnounced(blob, res, resumed ? have : 0);
    } catch (err) {
      discard(res.body);
      await unlink(partial).catch(() => undefined);
      throw err;
    }
    if (have > 0 && !resumed) {
      // The server sent the whole file (or another range): start over rather than splice wrong bytes.
      await truncate(partial, 0);
      have = 0;
      hash = newHash(blob);
      opts.onBytes?.(0);
    }
    const before = have;
    const h = hash;
    const counter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        opts.onActivity?.();
        // Checked before the chunk is passed on: bytes past the listed size never reach the file.
        if (have + chunk.length > blob.size) {
          return done(new IntegrityError(`${blob.path}: the Hub sent more than the listed ${blob.size} bytes; the file was deleted, pull again`, {
            data: { file: blob.path, expectedSize: blob.size },
          }));
        }
        h.update(chunk);
        have += chunk.length;
        fetched += chunk.length;
        opts.onBytes?.(have);
        done(null, chunk);
      },
    });
    const out = createWriteStream(partial, { flags: have > 0 ? "a" : "w" });
    try {
      await pipeline(res.body, counter, out, { signal: opts.signal });
      break;
    } catch (err) {
      // pipeline() rejects as soon as the source breaks, while the file stream may still be writing its last chunk:
      // measure the file only once that stream has closed, or the resume's Range starts short of the bytes that land
      // and the file ends up with a chunk twice (seen under load: 65,333 bytes too many).
      if (!out.closed) await once(out, "close").catch(() => undefined);
      if (opts.signal?.aborted) throw abortReason(opts.signal, `pull aborted during ${blob.path}; pulling again resumes it`, err);
      if (err instanceof IntegrityError) await unlink(partial).catch(() => undefined);
      if (err instanceof OmniError) throw err;
      // Bytes hashed may not all have reached the disk: rehash what did.
      have = await sizeOf(partial);
      if (have > before && resumes < (opts.maxResumes ?? 0)) {
        resumes++;
        hash = newHash(blob);
        await hashPrefix(hash, partial, opts.onActivity);
        continue;
      }
      throw new TransportError(
        `download of ${blob.path} broke off after ${have} of ${blob.size} bytes (${(err as Error).message}); run the same pull again to resume it`,
        { cause: err, data: { file: blob.path, bytes: have, size: blob.size, partial } },
      );
    }
  }
  await finish(blob, hash, partial, blobPath);
  return fetched;
}

async function finish(blob: ExpectedBlob, hash: Hash, partial: string, blobPath: string): Promise<void> {
  if (!existsSync(partial)) {
    // A zero-byte file gets no body to stream: still materialise it.
    await pipeline(async function* () {}, createWriteStream(partial));
  }
  const size = await sizeOf(partial);
  const digest = hash.digest("hex");
  const want = blob.sha256 ?? blob.gitSha1;
  if (size !== blob.size || (want && digest !== want)) {
    await unlink(partial).catch(() => undefined);
    const what = size !== blob.size ? `${size} bytes, expected ${blob.size}` : `${blob.sha256 ? "sha256" : "git sha1"} ${digest}, expected ${want}`;
    throw new IntegrityError(`downloaded ${blob.path} does not match the Hub's listing (${what}); the file was deleted, pull again`, {
      data: { file: blob.path, size, expectedSize: blob.size, digest, expected: want },
    });
  }
  await rename(partial, blobPath);
}
