import type { ZodError } from "zod";
import { ConfigError, ValidationError } from "../errors/omni-error.js";

/** `path: message` for every issue, and the first bad field, with paths written by `pathStyle`. */
function describeIssues(err: ZodError, pathStyle: (p: string) => string): { issues: string[]; field: string | undefined } {
  const paths = err.issues.map((i) => i.path.map(String).join("."));
  const issues = err.issues.map((i, k) => `${pathStyle(paths[k]!) || "(root)"}: ${i.message}`);
  return { issues, field: paths.length ? pathStyle(paths[0]!) : undefined };
}

/** Turns a zod failure into one ValidationError naming the first bad field and listing all problems (bad input of a request or reply). */
export function zodToValidationError(err: ZodError, what: string, pathStyle: (p: string) => string = (p) => p): ValidationError {
  const { issues, field } = describeIssues(err, pathStyle);
  return new ValidationError(`invalid ${what}: ${issues.join("; ")}`, { field, data: { issues } });
}

/**
 * Turns a zod failure into one ConfigError (bad configuration of an engine, executor or server, found
 * before anything starts): `invalid <what>: <path>: <problem>; …`, `field` the first bad path, `data.issues` all of them.
 */
export function zodToConfigError(err: ZodError, what: string, pathStyle: (p: string) => string = (p) => p): ConfigError {
  const { issues, field } = describeIssues(err, pathStyle);
  return new ConfigError(`invalid ${what}: ${issues.join("; ")}`, { field, data: { issues } });
}
