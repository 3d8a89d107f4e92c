/**
 * A stand-in for the Hugging Face Hub (the real one cannot be reached from the test machines): two HTTP
 * servers on 127.0.0.1:0 speaking the Hub's shapes as huggingface_hub reads them.
 * - hub: `GET /api/models/{owner}/{name}/revision/{rev}?blobs=true` → `{id, sha, siblings: [{rfilename, size,
 *   blobId, lfs?: {sha256, size, pointerSize}}]}`; `GET /{owner}/{name}/resolve/{rev}/{path}` → small files
 *   inline with `ETag` (git blob sha1) and `X-Repo-Commit`, LFS files as a 302 to the CDN with `X-Linked-Etag`
 *   (sha256) and `X-Linked-Size`; errors with `X-Error-Code` (`RepoNotFound`, `RevisionNotFound`, `GatedRepo`).
 * - cdn: another origin serving blobs by sha256, with `Range` support (206 + `Content-Range`).
 * Faults for tests: drop a file's connection after N bytes (once), corrupt a file's bytes, ignore ranges; and for
 * the hostile-hub tests, a listed size that differs from the content, a listing or a file served by the test's
 * own handler (test/hub/hostile-faults.ts).
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join, relative } from "node:path";

export interface FakeRepoInit {
  /** Folder whose files make up the repository. */
  dir?: string;
  /** Extra files (path → content), e.g. PyTorch weights that a pull must skip. */
  extra?: Record<string, string | Buffer>;
  /** Paths of `dir` left out. */
  omit?: string[];
  /** A gated repository: resolve answers 401 without this token, 403 with another one. */
  token?: string;
}

interface FakeFile {
  path: string;
  content: Buffer;
  blobId: string;
  sha256: string;
  lfs: boolean;
}

interface FakeRepo {
  id: string;
  sha: string;
  files: Map<string, FakeFile>;
  token?: string;
}

/** A file as the hub or the CDN is about to send it, handed to a {@link FileFault}. */
export interface FaultedFile {
  path: string;
  content: Buffer;
  /** The size the listing gave. */
  listedSize: number;
  /** First byte asked for with `Range: bytes=N-` (0 without one). */
  rangeStart: number;
  /** Headers the server would send (etag, commit), without the length. */
  headers: Record<string, string>;
}

/** Takes over the answer for one file: the test decides what goes on the wire. */
export type FileFault = (req: IncomingMessage, res: ServerResponse, file: FaultedFile) => void;

/** The listing the hub would send, as an object. */
export interface FakeListing {
  id: string;
  sha: string;
  siblings: { rfilename: string; size: number; blobId: string; lfs?: { sha256: string; size: number; pointerSize: number } }[];
}

/** Takes over the listing's answer for one repository. */
export type ListingFault = (req: IncomingMessage, res: ServerResponse, listing: FakeListing) => void;

/** One request either server received. */
export interface SeenRequest {
  server: "hub" | "cdn";
  path: string;
  range?: string;
  authorization?: string;
}

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? walk(p) : [p];
  });
}

function gitBlobSha1(content: Buffer): string {
  return createHash("sha1").update(`blob ${content.length}\0`).update(content).digest("hex");
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

export class FakeHub {
  readonly requests: SeenRequest[] = [];
  /** path → bytes sent before the connection is dropped, once. */
  readonly dropOnce = new Map<string, number>();
  /** Paths whose bytes are served altered. */
  readonly corrupt = new Set<string>();
  /** When set, the CDN ignores `Range` and answers 200 with the whole file. */
  ignoreRanges = false;
  /** path → the size the listing gives instead of the content's. */
  readonly listedSize = new Map<string, number>();
  /** path → a handler that answers for that file (on the hub for small files, on the CDN for LFS files). */
  readonly fileFaults = new Map<string, FileFault>();
  /** repository id → a handler that answers its listing. */
  readonly listingFaults = new Map<string, ListingFault>();
  url = "";
  cdnUrl = "";
  readonly #repos = new Map<string, FakeRepo>();
  readonly #blobs = new Map<string, FakeFile>();
  readonly #hub = createServer((req, res) => this.#onHub(req, res));
  readonly #cdn = createServer((req, res) => this.#onCdn(req, res));

  static async start(): Promise<FakeHub> {
    const hub = new FakeHub();
    hub.url = await listen(hub.#hub);
    hub.cdnUrl = await listen(hub.#cdn);
    return hub;
  }

  /** Adds a repository; returns its commit sha. Files ending in .onnx/.pb/.safetensors or over 4 KB are LFS files. */
  addRepo(id: string, init: FakeRepoInit): string {
    const files = new Map<string, FakeFile>();
    const add = (path: string, content: Buffer) => {
      const lfs = /\.(onnx|pb|safetensors|bin)$/.test(path) || content.length > 4096;
      const f: FakeFile = { path, content, blobId: gitBlobSha1(content), sha256: createHash("sha256").update(content).digest("hex"), lfs };
      files.set(path, f);
      this.#blobs.set(f.sha256, f);
    };
    if (init.dir) for (const p of walk(init.dir)) {
      const rel = relative(init.dir, p).split("\\").join("/");
      if (!init.omit?.includes(rel)) add(rel, readFileSync(p));
    }
    for (const [p, c] of Object.entries(init.extra ?? {})) add(p, Buffer.from(c));
    const sha = createHash("sha1").update(`commit ${id} ${[...files.values()].map((f) => f.blobId).join()}`).digest("hex");
    this.#repos.set(id, { id, sha, files, token: init.token });
    return sha;
  }

  async close(): Promise<void> {
    for (const s of [this.#hub, this.#cdn]) {
      s.closeAllConnections();
      await new Promise<void>((r) => s.close(() => r()));
    }
  }

  #record(server: "hub" | "cdn", req: IncomingMessage): void {
    this.requests.push({ server, path: req.url ?? "", range: req.headers.range, authorization: req.headers.authorization });
  }

  #error(res: ServerResponse, status: number, code: string | undefined, message: string): void {
    res.writeHead(status, { "content-type": "application/json", ...(code ? { "x-error-code": code } : {}), "x-error-message": message });
    res.end(JSON.stringify({ error: message }));
  }

  #onHub(req: IncomingMessage, res: ServerResponse): void {
    this.#record("hub", req);
    const url = new URL(req.url ?? "/", this.url);
    const api = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/([^/]+)$/.exec(url.pathname);
    const resolve = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    const repoId = api?.[1] ?? resolve?.[1];
    const repo = repoId ? this.#repos.get(repoId) : undefined;
    if (!repo) return this.#error(res, 404, "RepoNotFound", "Repository not found");
    const rev = decodeURIComponent((api ?? resolve)![2]!);
    if (rev !== "main" && rev !== repo.sha) return this.#error(res, 404, "RevisionNotFound", "Invalid rev id: " + rev);
    if (api) {
      const siblings = [...repo.files.values()].map((f) => {
        const size = this.listedSize.get(f.path) ?? f.content.length;
        return {
          rfilename: f.path,
          size,
          blobId: f.lfs ? gitBlobSha1(Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${f.sha256}\nsize ${size}\n`)) : f.blobId,
          ...(f.lfs ? { lfs: { sha256: f.sha256, size, pointerSize: 134 } } : {}),
        };
      });
      const listing: FakeListing = { id: repo.id, sha: repo.sha, siblings };
      const fault = this.listingFaults.get(repo.id);
      if (fault) return fault(req, res, listing);
      res.writeHead(200, { "content-type": "application/json" });
      return void res.end(JSON.stringify({ ...listing, gated: repo.token ? "manual" : false }));
    }
    if (repo.token && req.headers.authorization !== `Bearer ${repo.token}`) {
      const status = req.headers.authorization ? 403 : 401;
      return this.#error(res, status, "GatedRepo", `Access to model ${repo.id} is restricted. You must have access to it and be authenticated to access it. Please log in.`);
    }
    const file = repo.files.get(decodeURIComponent(resolve![3]!));
    if (!file) return this.#error(res, 404, "EntryNotFound", "Entry not found");
    const common = { "x-repo-commit": repo.sha };
    if (file.lfs) {
      res.writeHead(302, { ...common, location: `${this.cdnUrl}/blobs/${file.sha256}?X-Amz-Signature=fake`, "x-linked-etag": `"${file.sha256}"`, "x-linked-size": String(file.content.length) });
      return void res.end();
    }
    this.#send(req, res, file, { ...common, etag: `"${file.blobId}"` });
  }

  #onCdn(req: IncomingMessage, res: ServerResponse): void {
    this.#record("cdn", req);
    const m = /^\/blobs\/([0-9a-f]{64})/.exec(req.url ?? "");
    const file = m ? this.#blobs.get(m[1]!) : undefined;
    if (!file) return this.#error(res, 404, undefined, "NoSuchKey");
    this.#send(req, res, file, { etag: `"${file.sha256}"` });
  }

  /** Sends a file or the requested range of it, applying the faults set for it. */
  #send(req: IncomingMessage, res: ServerResponse, file: FakeFile, headers: Record<string, string>): void {
    const fault = this.fileFaults.get(file.path);
    if (fault) {
      const rangeStart = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? "")?.[1] ?? 0);
      return fault(req, res, { path: file.path, content: file.content, listedSize: this.listedSize.get(file.path) ?? file.content.length, rangeStart, headers });
    }
    let content = file.content;
    if (this.corrupt.has(file.path)) {
      content = Buffer.from(content);
      content[content.length >> 1]! ^= 0xff;
    }
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
    let start = 0;
    if (range && !this.ignoreRanges) {
      start = Number(range[1]);
      if (start >= content.length) {
        res.writeHead(416, { "content-range": `bytes */${content.length}` });
        return void res.end();
      }
      res.writeHead(206, { ...headers, "content-length": String(content.length - start), "content-range": `bytes ${start}-${content.length - 1}/${content.length}` });
    } else {
      res.writeHead(200, { ...headers, "content-length": String(content.length) });
    }
    const body = content.subarray(start);
    const drop = this.dropOnce.get(file.path);
    if (drop !== undefined) {
      this.dropOnce.delete(file.path);
      // Sends part of the body, then cuts the connection, as a network failure mid-file would.
      return void res.write(body.subarray(0, drop), () => res.socket?.destroy());
    }
    res.end(body);
  }
}
