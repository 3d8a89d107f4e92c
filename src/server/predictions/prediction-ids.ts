import { randomBytes } from "node:crypto";

const ALPHABET = "abcdefghijklmnopqrstuvwxyz234567";

/** 128 random bits as 26 lower-case base32 characters (the look of Replicate's ids). */
export function randomId(): string {
  const bytes = randomBytes(17); // 136 bits read, 130 used
  let bits = 0;
  let value = 0;
  let out = "";
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5 && out.length < 26) {
      out += ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    value &= (1 << bits) - 1;
  }
  return out;
}

/** True for a string {@link randomId} could have made (checked before an id reaches a file path). */
export function isRandomId(s: string): boolean {
  return /^[a-z2-7]{26}$/.test(s);
}
