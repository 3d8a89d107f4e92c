import { createHash, timingSafeEqual } from "node:crypto";
import { UnauthorizedError } from "../../errors/omni-error.js";

const digest = (s: string) => createHash("sha256").update(s, "utf8").digest();

/**
 * Checks `Authorization: Bearer <key>` against the configured key in constant time (both sides are hashed
 * first, so neither the key's length nor its content leaks through timing). Returns the 401 to send, or null.
 */
export function checkApiKey(authorization: string | undefined, key: string): UnauthorizedError | null {
  if (!authorization) {
    return new UnauthorizedError("You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.", { data: { openaiCode: "missing_api_key" } });
  }
  const m = /^Bearer\s+(.+)$/i.exec(authorization.trim());
  if (!m || !timingSafeEqual(digest(m[1]!.trim()), digest(key))) {
    return new UnauthorizedError("Incorrect API key provided.", { data: { openaiCode: "invalid_api_key" } });
  }
  return null;
}
