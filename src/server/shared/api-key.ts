import { createHash, timingSafeEqual } from "node:crypto";
import { UnauthorizedError } from "../../errors/omni-error.js";

const digest = (s: string) => createHash("sha256").update(s, "utf8").digest();

/**
 * A key as every side uses it: without surrounding whitespace. HTTP/1.1 strips it from header values and
 * HTTP/2 (gRPC) drops a value that has it, so a key is only the same key on every transport once trimmed;
 * both the server's configured key and the key a client sends go through this.
 */
export function normalizeApiKey(key: string): string {
  return key.trim();
}

/**
 * The one API-key check of every server (serve, the worker's HTTP and SageMaker ports, gRPC), so the rules
 * are the same everywhere: exactly one `authorization` value, `Bearer <key>` or HTTP Basic with the key as
 * the password and any user name (`Basic base64(user:key)`, what AUTOMATIC1111 clients send for `--api-auth`;
 * schemes case-insensitive, surrounding whitespace trimmed from the value and from both keys, {@link normalizeApiKey}), compared in constant time (both sides are hashed first, so neither the
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
    return new UnauthorizedError("You didn't provide an API key. Send it as 'Authorization: Bearer <key>' (or as the password of HTTP Basic auth).", { data: { openaiCode: "missing_api_key" } });
  }
  const presented = bearerToken(value) ?? basicPassword(value);
  if (presented === null || !timingSafeEqual(digest(presented), digest(normalizeApiKey(key)))) {
    return new UnauthorizedError("Incorrect API key provided.", { data: { openaiCode: "invalid_api_key" } });
  }
  return null;
}

/** The token of `Bearer <token>`, or null for another scheme. */
function bearerToken(value: string): string | null {
  const m = /^Bearer\s+(.+)$/i.exec(value);
  return m ? m[1]!.trim() : null;
}

/** The password of `Basic base64(user:password)` (RFC 7617: the user name ends at the first colon), or null. */
function basicPassword(value: string): string | null {
  const m = /^Basic\s+([A-Za-z0-9+/=_-]+)$/i.exec(value);
  if (!m) return null;
  const decoded = Buffer.from(m[1]!, "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  return colon < 0 ? null : decoded.slice(colon + 1);
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
