/**
 * The `whsec_...` signing secret of Standard Webhooks: base64 key bytes behind a `whsec_` prefix. Parsed once
 * at startup (a bad `--webhook-secret` is a one-line error naming the flag), or generated when none is given.
 */
import { randomBytes } from "node:crypto";
import { ConfigError } from "../../../errors/omni-error.js";

const PREFIX = "whsec_";
/** Standard Webhooks: keys SHOULD be 24 to 64 bytes. */
const MIN_KEY_BYTES = 24;
const MAX_KEY_BYTES = 64;

/** Returns `value` if it is a usable `whsec_` secret; else throws a ConfigError naming `field`. */
export function parseWebhookSecret(value: string, field = "--webhook-secret"): string {
  const secret = value.trim();
  const body = secret.startsWith(PREFIX) ? secret.slice(PREFIX.length) : null;
  if (body === null) throw new ConfigError(`${field} must start with "${PREFIX}" (a Standard Webhooks secret), got ${describe(secret)}`, { field });
  // Strict base64: Buffer.from would skip bad characters silently and sign with a different key.
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(body) || body.length % 4 !== 0) {
    throw new ConfigError(`${field}: the part after "${PREFIX}" must be base64`, { field });
  }
  const bytes = Buffer.from(body, "base64").length;
  if (bytes < MIN_KEY_BYTES || bytes > MAX_KEY_BYTES) {
    throw new ConfigError(`${field}: the key must be ${MIN_KEY_BYTES} to ${MAX_KEY_BYTES} bytes, got ${bytes}`, { field });
  }
  return secret;
}

/** A fresh secret: 32 random bytes. */
export function generateWebhookSecret(): string {
  return `${PREFIX}${randomBytes(32).toString("base64")}`;
}

/** Never echo a secret-like value in full into an error message (it lands in logs). */
function describe(value: string): string {
  return value.length === 0 ? "an empty value" : `a value starting with ${JSON.stringify(value.slice(0, 4))}`;
}
