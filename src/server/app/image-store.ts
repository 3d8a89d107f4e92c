import { randomBytes } from "node:crypto";

/** One stored image. */
export interface StoredImage {
  png: Buffer;
  /** `Date.now()` time after which the image is gone. */
  expiresAt: number;
}

/**
 * The PNGs handed out as `response_format: "url"`, kept in memory until they expire (OpenAI: 60 minutes)
 * or until the byte budget forces the oldest out. Ids are 128 random bits, so a URL cannot be guessed.
 * Expired entries are dropped lazily on every access: the store owns no timer.
 *
 * @example
 * ```ts
 * const store = new ImageStore({ ttlMs: 60_000, maxBytes: 1 << 20 });
 * const { id } = store.put(Buffer.from("png bytes"));
 * const img = store.get(id); // { png, expiresAt } until it expires
 * ```
 */
export class ImageStore {
  readonly ttlMs: number;
  readonly maxBytes: number;
  /** Insertion order is expiry order (one TTL for all), so eviction only ever looks at the front. */
  #items = new Map<string, StoredImage>();
  #bytes = 0;
  #now: () => number;

  constructor(opts: { ttlMs: number; maxBytes: number; now?: () => number }) {
    this.ttlMs = opts.ttlMs;
    this.maxBytes = opts.maxBytes;
    this.#now = opts.now ?? Date.now;
  }

  get size(): number {
    return this.#items.size;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** Stores a PNG; returns its id and expiry. The oldest images go when the budget is exceeded. */
  put(png: Buffer): { id: string; expiresAt: number } {
    this.#evict(png.byteLength);
    const id = `img_${randomBytes(16).toString("base64url")}`;
    const expiresAt = this.#now() + this.ttlMs;
    this.#items.set(id, { png, expiresAt });
    this.#bytes += png.byteLength;
    return { id, expiresAt };
  }

  /** The image, or null when unknown, expired or evicted. */
  get(id: string): StoredImage | null {
    this.#evict(0);
    return this.#items.get(id) ?? null;
  }

  clear(): void {
    this.#items.clear();
    this.#bytes = 0;
  }

  #evict(incoming: number): void {
    const now = this.#now();
    for (const [id, item] of this.#items) {
      if (item.expiresAt > now && this.#bytes + incoming <= this.maxBytes) break;
      this.#items.delete(id);
      this.#bytes -= item.png.byteLength;
    }
  }
}
