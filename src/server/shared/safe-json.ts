import { ValidationError } from "../../errors/omni-error.js";

/** Deepest nesting of arrays/objects a JSON document may have by default (requests are 2-3 levels deep). */
export const DEFAULT_MAX_JSON_DEPTH = 64;

/** Bounds of {@link parseJsonSafely}. */
export interface SafeJsonLimits {
  /** Deepest nesting of arrays and objects. Default {@link DEFAULT_MAX_JSON_DEPTH}. */
  maxDepth?: number;
  /** Largest document, UTF-8 bytes (unchecked when absent: the HTTP servers already bound bodies). */
  maxBytes?: number;
  /** What the document is, for messages and `data.field` ("body", "args_json"). Default "body". */
  field?: string;
}

/**
 * True when `text` nests arrays/objects deeper than `maxDepth`. A linear scan that stops at the first level
 * too deep, run before `JSON.parse`, so a hostile document never reaches anything recursive (parse revivers,
 * validators, `JSON.stringify` on the way to a worker process).
 */
export function exceedsJsonDepth(text: string, maxDepth: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > maxDepth) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

/** `JSON.parse` reviver refusing the keys that pollute prototypes once merged into an object. */
function refusePoison(key: string, value: unknown): unknown {
  if (key === "__proto__") throw new ValidationError('the key "__proto__" is not allowed', { field: "__proto__" });
  if (key === "constructor" && value !== null && typeof value === "object" && Object.hasOwn(value, "prototype")) {
    throw new ValidationError('the key "constructor.prototype" is not allowed', { field: "constructor" });
  }
  return value;
}

/**
 * The one JSON parser of every server entry point (HTTP bodies of serve, the worker and the SageMaker port;
 * gRPC `args_json`/`kwargs_json`): size and depth are bounded before parsing, `__proto__` and
 * `constructor.prototype` keys are refused, and every failure is a 400 {@link ValidationError} (413 for size)
 * naming `field`, never a stack overflow or a 500.
 *
 * @example
 * ```ts
 * parseJsonSafely('{"a": [1, 2]}'); // { a: [1, 2] }
 * parseJsonSafely("[".repeat(5000), { maxDepth: 64 }); // throws ValidationError (400)
 * ```
 */
export function parseJsonSafely(text: string, limits: SafeJsonLimits = {}): unknown {
  const field = limits.field ?? "body";
  const maxDepth = limits.maxDepth ?? DEFAULT_MAX_JSON_DEPTH;
  if (limits.maxBytes !== undefined && Buffer.byteLength(text, "utf8") > limits.maxBytes) {
    throw new ValidationError(`${field} is larger than the limit of ${limits.maxBytes} bytes`, { field, statusCode: 413, data: { openaiCode: "request_too_large" } });
  }
  if (!text.trim()) throw new ValidationError(`${field} is empty; send a JSON value`, { field, data: { openaiCode: "invalid_json" } });
  if (exceedsJsonDepth(text, maxDepth)) {
    throw new ValidationError(`${field} nests arrays/objects deeper than ${maxDepth} levels`, { field, data: { openaiCode: "json_too_deep", maxDepth } });
  }
  try {
    return JSON.parse(text, refusePoison);
  } catch (err) {
    if (err instanceof ValidationError) {
      throw new ValidationError(`${field} is refused: ${err.message}`, { field, cause: err, data: { openaiCode: "invalid_json" } });
    }
    throw new ValidationError(`${field} is not valid JSON: ${(err as Error).message}`, { field, cause: err, data: { openaiCode: "invalid_json" } });
  }
}
