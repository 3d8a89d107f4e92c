import type { Readable } from "node:stream";
import { request, type Dispatcher } from "undici";
import { ConfigError, HubAuthError, HubNotFoundError, OmniError, TransportError } from "../errors/omni-error.js";
import { connectionError } from "../errors/connection-error.js";
import { abortReason, discard, readUpTo } from "./bounded-read.js";
import { checkListing, type HubSibling } from "./listing-check.js";

export type { HubSibling } from "./listing-check.js";

/** The parts of the Hub's model-info answer the puller reads. */
export interface HubRepoInfo {
  id: string;
  /** The commit the requested revision points at. */
  sha: string;
  siblings: HubSibling[];
}

/** A file response, after redirects: its body and what the Hub said about it. */
export interface HubFileResponse {
  /** 200 (whole file) or 206 (the requested range). */
  status: number;
  body: Readable;
  /** `X-Linked-Etag` (LFS: the sha256) or `ETag`, without quotes or `W/`. */
  etag: string | undefined;
  /** `X-Repo-Commit`. */
  commit: string | undefined;
  /** First byte of a 206 answer (`Content-Range`). */
  rangeStart: number | undefined;
  /** The whole file's size a 206 answer gives (`Content-Range: bytes a-b/<size>`), undefined for `*`. */
  rangeTotal: number | undefined;
  /** `Content-Length`: the bytes this answer's body announces, undefined for a chunked body. */
  contentLength: number | undefined;
}

export interface HubClientOptions {
  /** Base URL of the Hub (`HF_ENDPOINT`). */
  endpoint: string;
  /** Bearer token (`HF_TOKEN`); sent to the Hub's own origin only, never to the CDN it redirects to. */
  token?: string;
  signal?: AbortSignal;
  dispatcher?: Dispatcher;
  /** Most bytes of a listing read before it is refused (default {@link MAX_LISTING_BYTES}). */
  maxListingBytes?: number;
  /** Called on every answer's headers and every chunk of a listing: progress for a no-progress deadline. */
  onActivity?: () => void;
}

/**
 * Largest listing read (16 MiB). A diffusers repository lists a few dozen files at about 250 bytes each; 16 MiB holds
 * some 60,000, and parsing it costs well under 200 MB where a 150 MB listing took 892 MB.
 */
export const MAX_LISTING_BYTES = 16 * 1024 * 1024;

/** Most bytes of an error answer read for its message. */
const MAX_ERROR_BODY_BYTES = 64 * 1024;

const MAX_REDIRECTS = 10;
const USER_AGENT = "omni-diffusion/0.1.0; hf_hub-compatible";

/** The headers' value as one string (undici gives arrays for repeated headers). */
function header(h: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

/** huggingface_hub's `_normalize_etag`: `W/"abc"` and `"abc"` → `abc`. */
export function normalizeEtag(etag: string | undefined): string | undefined {
  return etag?.replace(/^W\//, "").replace(/^"|"$/g, "") || undefined;
}

/**
 * The few Hub HTTP calls a pull needs, with the Hub's error answers mapped to typed errors:
 * 401/403 and `X-Error-Code: GatedRepo` → {@link HubAuthError}; 404 and `RepoNotFound` / `RevisionNotFound` /
 * `EntryNotFound` → {@link HubNotFoundError}; 429 and 5xx → a retryable {@link TransportError}.
 */
export class HubClient {
  readonly endpoint: string;
  readonly #token: string | undefined;
  readonly #signal: AbortSignal | undefined;
  readonly #dispatcher: Dispatcher | undefined;
  readonly #maxListingBytes: number;
  readonly #onActivity: () => void;

  constructor(opts: HubClientOptions) {
    let url: URL | null = null;
    try {
      url = new URL(opts.endpoint);
    } catch {
      // reported below
    }
    if (!url || (url.protocol !== "http:" && url.protocol !== "https:")) {
      throw new ConfigError(`the Hub endpoint "${opts.endpoint}" (HF_ENDPOINT) is not an http(s) URL`, { field: "HF_ENDPOINT" });
    }
    this.endpoint = opts.endpoint.replace(/\/+$/, "");
    this.#token = opts.token || undefined;
    this.#signal = opts.signal;
    this.#dispatcher = opts.dispatcher;
    this.#maxListingBytes = opts.maxListingBytes ?? MAX_LISTING_BYTES;
    this.#onActivity = opts.onActivity ?? (() => undefined);
  }

  /**
   * Files and commit of `repoId` at `revision` (a branch, tag or commit). The listing is read up to
   * `maxListingBytes` and its siblings checked ({@link checkListing}): a malformed or oversized listing is a
   * non-retryable {@link TransportError}.
   */
  async repoInfo(repoId: string, revision: string): Promise<HubRepoInfo> {
    const url = `${this.endpoint}/api/models/${repoId}/revision/${encodeURIComponent(revision)}?blobs=true`;
    const subject = `${repoId}@${revision}`;
    const res = await this.#get(url, {}, { repoId, revision });
    const max = this.#maxListingBytes;
    const tooBig = () =>
      new TransportError(`the Hub's listing of ${subject} is larger than ${max / 1024 / 1024} MiB; refusing to read it (a model repository lists a few dozen files)`, {
        retryable: false,
        data: { url, maxListingBytes: max },
      });
    const announced = Number(header(res.headers, "content-length") ?? NaN);
    if (announced > max) {
      discard(res.body);
      throw tooBig();
    }
    let body: Buffer;
    try {
      const read = await readUpTo(res.body, max, this.#onActivity);
      if (!read.complete) throw tooBig();
      body = read.bytes;
    } catch (err) {
      if (this.#signal?.aborted) throw abortReason(this.#signal, "pull aborted", err);
      if (err instanceof OmniError) throw err;
      throw connectionError(err, new URL(url).origin);
    }
    let info: unknown;
    try {
      info = JSON.parse(body.toString("utf8"));
    } catch (err) {
      throw new TransportError(`${url}: the Hub's answer is not JSON`, { cause: err, retryable: false });
    }
    const i = info as Partial<HubRepoInfo> | null;
    if (!i || typeof i.sha !== "string" || !Array.isArray(i.siblings)) {
      throw new TransportError(`${url}: the Hub's answer lacks "sha" or "siblings"`, { retryable: false, data: { url } });
    }
    return { id: typeof i.id === "string" ? i.id : repoId, sha: i.sha, siblings: checkListing(subject, i.siblings) };
  }

  /** Opens `resolve/{commit}/{path}`, following the redirect to the CDN; `from` > 0 asks for the bytes from there on. */
  async openFile(repoId: string, commit: string, path: string, from = 0): Promise<HubFileResponse> {
    const url = `${this.endpoint}/${repoId}/resolve/${encodeURIComponent(commit)}/${path.split("/").map(encodeURIComponent).join("/")}`;
    const headers: Record<string, string> = from > 0 ? { range: `bytes=${from}-` } : {};
    const res = await this.#get(url, headers, { repoId, revision: commit, file: path });
    const range = res.statusCode === 206 ? /bytes (\d+)-\d+\/(\d+|\*)/.exec(header(res.headers, "content-range") ?? "") : null;
    const length = header(res.headers, "content-length");
    return {
      status: res.statusCode,
      body: res.body,
      etag: normalizeEtag(res.linkedEtag ?? header(res.headers, "etag")),
      commit: res.commit,
      rangeStart: res.statusCode === 206 ? Number(range?.[1] ?? NaN) : undefined,
      rangeTotal: range && range[2] !== "*" ? Number(range[2]) : undefined,
      contentLength: length !== undefined && /^\d+$/.test(length) ? Number(length) : undefined,
    };
  }

  /**
   * GET with redirects followed by hand: the Hub's `X-Linked-Etag` / `X-Repo-Commit` sit on the redirect,
   * and the token must not follow a redirect to another origin (the CDN's URL is signed).
   */
  async #get(url: string, extra: Record<string, string>, what: { repoId: string; revision: string; file?: string }) {
    let current = new URL(url);
    const origin = current.origin;
    let linkedEtag: string | undefined;
    let commit: string | undefined;
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      const headers: Record<string, string> = { "user-agent": USER_AGENT, "accept-encoding": "identity", ...extra };
      if (this.#token && current.origin === origin) headers.authorization = `Bearer ${this.#token}`;
      let res: Dispatcher.ResponseData;
      try {
        res = await request(current, { method: "GET", headers, signal: this.#signal, dispatcher: this.#dispatcher });
      } catch (err) {
        if (this.#signal?.aborted) throw abortReason(this.#signal, "pull aborted", err);
        throw connectionError(err, current.origin);
      }
      this.#onActivity();
      linkedEtag ??= header(res.headers, "x-linked-etag");
      commit ??= header(res.headers, "x-repo-commit");
      if (res.statusCode >= 300 && res.statusCode < 400 && res.statusCode !== 304) {
        const location = header(res.headers, "location");
        await res.body.dump();
        if (!location) throw new TransportError(`${current}: redirect without a Location`, { retryable: false });
        current = new URL(location, current);
        continue;
      }
      if (res.statusCode >= 200 && res.statusCode < 300) return Object.assign(res, { linkedEtag, commit });
      const body = await readUpTo(res.body, MAX_ERROR_BODY_BYTES).then((r) => r.bytes.toString("utf8"), () => "");
      throw hubHttpError(res.statusCode, res.headers, current.toString(), what, this.#token !== undefined, body);
    }
    throw new TransportError(`${url}: more than ${MAX_REDIRECTS} redirects`, { retryable: false });
  }
}

/** The Hub's error answer as a typed error that says what to do. */
export function hubHttpError(
  status: number,
  headers: Record<string, string | string[] | undefined>,
  url: string,
  what: { repoId: string; revision: string; file?: string },
  hadToken: boolean,
  body = "",
): OmniError {
  const code = header(headers, "x-error-code");
  const serverSays = header(headers, "x-error-message") ?? (/"error"\s*:\s*"([^"]{1,200})"/.exec(body)?.[1] || undefined);
  const data = { url, status, repoId: what.repoId, revision: what.revision, file: what.file, hubErrorCode: code };
  const subject = what.file ? `${what.file} of ${what.repoId}@${what.revision}` : `${what.repoId}@${what.revision}`;
  const detail = serverSays ? ` (${serverSays})` : "";
  if (code === "GatedRepo" || ((status === 401 || status === 403) && code !== "RepoNotFound")) {
    const fix = hadToken
      ? `the token in HF_TOKEN was refused: check it has read access and that you accepted the licence on the model's page (${what.repoId})`
      : `set HF_TOKEN to a Hugging Face access token with read access, after accepting the licence on the model's page (${what.repoId})${code === "GatedRepo" ? "" : "; a private repository also answers so"}`;
    return new HubAuthError(`the Hub refused ${subject} with ${status}${detail}: ${fix}`, { data });
  }
  if (status === 404 || code === "RepoNotFound" || code === "RevisionNotFound" || code === "EntryNotFound") {
    const which =
      code === "RevisionNotFound" ? `revision "${what.revision}" of ${what.repoId}` : code === "RepoNotFound" || !what.file ? `repository ${what.repoId}` : subject;
    return new HubNotFoundError(`the Hub has no ${which}${detail}; check the id${hadToken ? "" : " (private repositories need HF_TOKEN)"}`, { data });
  }
  const retryable = status === 408 || status === 429 || status >= 500;
  return new TransportError(`the Hub answered ${status} for ${subject}${detail}`, { retryable, data });
}
