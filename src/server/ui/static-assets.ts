import { createHash } from "node:crypto";
import { readFile, readdir } from "node:fs/promises";
import { extname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { ConfigError } from "../../errors/omni-error.js";

/** The playground's files: `playground/` at the package root (beside `dist/` and `src/`, so both resolve it). */
export const PLAYGROUND_DIR = fileURLToPath(new URL("../../../playground/", import.meta.url));

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
};

/** One file served from memory, with its strong ETag. */
export interface StaticAsset {
  body: Buffer;
  contentType: string;
  etag: string;
}

/**
 * Reads every servable file under `dir` into memory, keyed by its path relative to `dir` with `/`
 * separators (`index.html`, `lib/sse.js`). The playground is a few tens of kB, so serving from memory is
 * simpler and faster than a static-file plugin, and only these names can ever be served (no path traversal).
 */
export async function loadStaticAssets(dir: string = PLAYGROUND_DIR): Promise<Map<string, StaticAsset>> {
  let entries: string[];
  try {
    entries = (await readdir(dir, { recursive: true })).map(String);
  } catch (err) {
    throw new ConfigError(`the playground's files are missing (${dir}); reinstall the package or serve with --no-ui`, { cause: err });
  }
  const assets = new Map<string, StaticAsset>();
  for (const name of entries.sort()) {
    const contentType = CONTENT_TYPES[extname(name)];
    if (!contentType) continue;
    const body = await readFile(join(dir, name));
    const etag = `"${createHash("sha256").update(body).digest("base64url").slice(0, 27)}"`;
    assets.set(relative(dir, join(dir, name)).split(sep).join("/"), { body, contentType, etag });
  }
  if (!assets.has("index.html")) throw new ConfigError(`the playground's index.html is missing in ${dir}; reinstall the package or serve with --no-ui`);
  return assets;
}

/** Total bytes of the assets (the figure docs/server.md quotes). */
export function assetBytes(assets: Map<string, StaticAsset>): number {
  let n = 0;
  for (const a of assets.values()) n += a.body.length;
  return n;
}
