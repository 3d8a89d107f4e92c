import { createHash, timingSafeEqual } from "node:crypto";
import { UnauthorizedError } from "../../errors/omni-error.js";

const digest = (s: string) => createHash("sha256").update(s, "utf8").digest();

/**
 * The one API-key check of every server (serve, the worker's HTTP and SageMaker ports, gRPC), so the rules
 * are the same everywhere: exactly one `authorization` value, `Bearer <key>` (scheme case-insensitive,
 * surrounding whitespace trimmed), compared in constant time (both sides are hashed first, so neither the
 * key's length nor its content leaks through timing). Several values (two headers, two metadata entries)
 * are refused: a proxy and the server could otherwise read different ones. Returns the 401 to send, or null.
 *
 * @example
 * ```ts
 * const refusal = checkApiKey(req.headers.authorization, "s3cret");
 * if (refusal) throw refusal;
 * ```
 */
export function checkApiKey(authorization: string | readonly string[] | undefined, key: string): UnauthorizedError | null {
  const values = authorization === undefined ? [] : typeof authorization === "string" ? [authorization] : authorization;
  if (values.length > 1) {
    return new UnauthorizedError("Send exactly one Authorization value; this request carried several.", { data: { openaiCode: "invalid_api_key" } });
  }
  const value = values[0]?.trim();
  if (!value) {
    return new UnauthorizedError("You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.", { data: { openaiCode: "missing_api_key" } });
  }
  const m = /^Bearer\s+(.+)$/i.exec(value);
  if (!m || !timingSafeEqual(digest(m[1]!.trim()), digest(key))) {
    return new UnauthorizedError("Incorrect API key provided.", { data: { openaiCode: "invalid_api_key" } });
  }
  return null;
}

/**
 * Every `Authorization` header of an HTTP request. Node keeps only the first of duplicated `authorization`
 * headers in `req.headers`, so the raw list is read to see them all.
 */
export function authorizationHeaders(rawHeaders: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) if (rawHeaders[i]!.toLowerCase() === "authorization") out.push(rawHeaders[i + 1]!);
  return out;
}
