import { existsSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { basename, isAbsolute, join, resolve } from "node:path";
import { ConfigError } from "../errors/omni-error.js";
import { findCachedSnapshot, hubCacheDir, parseRepoSpec, repoCacheDir, type HubEnv } from "./hub-cache.js";
import { BUILTIN_MODELS } from "./paths.js";

/** Where {@link resolveModelSpec} looks; defaults to the process's working directory and environment. */
export interface ModelSpecOptions {
  cwd?: string;
  env?: HubEnv;
}

function isDir(p: string): boolean {
  return existsSync(p) && statSync(p).isDirectory();
}

/** A spec that can only mean a path: absolute, `./`, `../`, `~/`, or with a backslash. */
function isExplicitPath(spec: string): boolean {
  return isAbsolute(spec) || /^(\.{1,2}|~)([/\\]|$)/.test(spec) || spec.includes("\\");
}

/**
 * Turns what a user wrote as `model` / `--model` into a model folder, trying in order:
 * 1. a path: an existing folder (relative to `cwd`) is used as is; an explicit path (`/…`, `./…`, `~/…`)
 *    is used even when missing, so the loader can say which file it lacks;
 * 2. a built-in model name (`"tiny-shapes"`), found wherever the package is installed;
 * 3. a Hugging Face model id `owner/name[@revision]` (default revision `main`): the snapshot that
 *    `omni-diffusion pull` (or huggingface_hub) left in the Hub cache (`$HF_HUB_CACHE` / `$HF_HOME/hub`).
 *
 * Anything else is a {@link ConfigError} naming each place tried and how to fetch the model.
 *
 * @example
 * ```ts
 * import { resolveModelSpec } from "omni-diffusion";
 * const dir = resolveModelSpec("tiny-shapes"); // the shipped model's folder, from any working directory
 * ```
 */
export function resolveModelSpec(spec: string, opts: ModelSpecOptions = {}): string {
  const env = opts.env ?? process.env;
  if (typeof spec !== "string" || spec.trim() === "") throw new ConfigError("model: must be a folder, a built-in model name or a Hugging Face model id", { field: "model" });
  const expanded = spec === "~" || spec.startsWith("~/") ? join(homedir(), spec.slice(1)) : spec;
  const asPath = resolve(opts.cwd ?? process.cwd(), expanded);
  if (isDir(asPath) || isExplicitPath(spec)) return asPath;
  const builtin = Object.hasOwn(BUILTIN_MODELS, spec) ? BUILTIN_MODELS[spec] : undefined;
  if (builtin) return builtin;
  const tried = [`folder ${asPath}`, `built-in models (${Object.keys(BUILTIN_MODELS).join(", ")})`];
  const repo = parseRepoSpec(spec);
  if (repo) {
    const cacheDir = hubCacheDir(env);
    const snapshot = findCachedSnapshot(repo.repoId, repo.revision, cacheDir);
    if (snapshot) return snapshot;
    tried.push(`Hugging Face cache ${repoCacheDir(repo.repoId, cacheDir)} (revision ${repo.revision})`);
    throw new ConfigError(
      `model "${spec}" not found; tried ${tried.join("; ")}. Download it with: omni-diffusion pull ${repo.repoId}${repo.revision === "main" ? "" : ` --revision ${repo.revision}`}`,
      { field: "model", data: { tried } },
    );
  }
  throw new ConfigError(
    `model "${spec}" not found; tried ${tried.join("; ")}. Give a model folder, a built-in name, or a Hugging Face id (owner/name) fetched with omni-diffusion pull`,
    { field: "model", data: { tried } },
  );
}

/**
 * A short name for a model folder (the default id `serve` gives it): `owner/name` for a Hub cache snapshot
 * (`…/models--owner--name/snapshots/<commit>`), else the folder's own name.
 */
export function modelDisplayName(dir: string): string {
  const m = /(?:^|[/\\])models--([^/\\]+)[/\\]snapshots[/\\][0-9a-f]{40}[/\\]?$/.exec(dir);
  return m ? m[1]!.split("--").join("/") : basename(resolve(dir));
}
