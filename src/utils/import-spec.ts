import { createRequire } from "node:module";
import { isAbsolute, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

/** A `"module#Export"` string split into its parts. */
export interface ParsedSpec {
  module: string;
  /** `"default"` when the spec has no `#`. */
  exportName: string;
}

/** What {@link importSpec} found, or why it found nothing. */
export type ImportSpecResult =
  | { ok: true; value: unknown; module: string; exportName: string; url: string }
  | { ok: false; reason: string; module: string; exportName: string };

/** Splits `"module#Export"` at its last `#`; no `#` means the default export. */
export function parseSpec(spec: string): ParsedSpec {
  const i = spec.lastIndexOf("#");
  // i === 0 is a package "imports" specifier (#internal), not an export separator.
  if (i <= 0) return { module: spec, exportName: "default" };
  return { module: spec.slice(0, i), exportName: spec.slice(i + 1) || "default" };
}

const looksLikePath = (m: string) => m.startsWith("./") || m.startsWith("../") || m === "." || m === ".." || isAbsolute(m) || /^[A-Za-z]:[\\/]/.test(m);

/**
 * Imports `"module#Export"` and returns the export. Relative and absolute paths resolve against `cwd`
 * (default `process.cwd()`); `file:` URLs are used as they are; bare package names resolve from this
 * package first, then from `cwd` (a user's project). `.ts` files work when the process runs under tsx.
 * Never throws: callers wrap `reason` into their own error class.
 */
export async function importSpec(spec: string, cwd: string = process.cwd()): Promise<ImportSpecResult> {
  const { module, exportName } = parseSpec(spec);
  if (!module) return { ok: false, reason: "the module part is empty", module, exportName };

  const urls: string[] = [];
  if (module.startsWith("file:")) urls.push(module);
  else if (looksLikePath(module)) urls.push(pathToFileURL(resolve(cwd, module)).href);
  else urls.push(module);

  let ns: Record<string, unknown> | undefined;
  let url = urls[0]!;
  const failures: string[] = [];
  try {
    ns = (await import(url)) as Record<string, unknown>;
  } catch (err) {
    failures.push(`${url}: ${describe(err)}`);
    if (!looksLikePath(module) && !module.startsWith("file:") && isModuleNotFound(err)) {
      // A package the user installed in their own project is not visible from our node_modules.
      try {
        url = pathToFileURL(createRequire(join(cwd, "noop.js")).resolve(module)).href;
        ns = (await import(url)) as Record<string, unknown>;
      } catch (err2) {
        failures.push(`from ${cwd}: ${describe(err2)}`);
      }
    }
  }
  if (!ns) return { ok: false, reason: `module "${module}" could not be imported (${failures.join("; ")})`, module, exportName };
  if (!(exportName in ns)) {
    const names = Object.keys(ns).filter((k) => k !== "__esModule");
    return {
      ok: false,
      reason: `module "${module}" has no export "${exportName}" (it exports: ${names.length ? names.join(", ") : "nothing"})`,
      module,
      exportName,
    };
  }
  return { ok: true, value: ns[exportName], module, exportName, url };
}

function isModuleNotFound(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === "ERR_MODULE_NOT_FOUND" || code === "MODULE_NOT_FOUND";
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    const first = err.message.split("\n")[0];
    return typeof code === "string" ? `${code}: ${first}` : first ?? err.name;
  }
  return String(err);
}
