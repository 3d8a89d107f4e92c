import type { ZodError } from "zod";
import { ValidationError } from "../errors/omni-error.js";

/** Turns a zod failure into one ValidationError naming the first bad field and listing all problems. */
export function zodToValidationError(err: ZodError, what: string, pathStyle: (p: string) => string = (p) => p): ValidationError {
  const issues = err.issues.map((i) => {
    const path = pathStyle(i.path.map(String).join("."));
    return `${path || "(root)"}: ${i.message}`;
  });
  const first = err.issues[0];
  const field = first ? pathStyle(first.path.map(String).join(".")) : undefined;
  return new ValidationError(`invalid ${what}: ${issues.join("; ")}`, { field, data: { issues } });
}
