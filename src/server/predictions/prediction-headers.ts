import { predictionError } from "./prediction-errors.js";

/** Longest synchronous wait `Prefer: wait` may ask for, s (Replicate's limit). */
export const MAX_WAIT_SECONDS = 60;

/**
 * `Prefer: wait` (60 s) or `Prefer: wait=N` (1–60 s): how long the create call may hold the response for the
 * prediction to finish, in ms; 0 without the preference. Other preferences in the header are ignored.
 */
export function preferWaitMs(header: string | string[] | undefined): number {
  const value = Array.isArray(header) ? header.join(",") : (header ?? "");
  for (const part of value.split(",").map((p) => p.trim().toLowerCase())) {
    if (part === "wait") return MAX_WAIT_SECONDS * 1000;
    const m = /^wait\s*=\s*(.*)$/.exec(part);
    if (!m) continue;
    const n = Number(m[1]);
    if (!Number.isInteger(n) || n < 1 || n > MAX_WAIT_SECONDS) {
      throw predictionError(400, `Prefer: wait=${m[1]} is not a whole number of seconds from 1 to ${MAX_WAIT_SECONDS}`, "Prefer");
    }
    return n * 1000;
  }
  return 0;
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

/**
 * `Cancel-After: 90s` (also `500ms`, `5m`, `1h30m`, or bare seconds): the deadline after which a prediction
 * that has not finished is aborted (not started yet) or canceled (running), in ms; null without the header.
 */
export function cancelAfterMs(header: string | string[] | undefined): number | null {
  if (header === undefined) return null;
  const value = (Array.isArray(header) ? header[0]! : header).trim().toLowerCase();
  const bad = () => predictionError(400, `Cancel-After: '${value}' is not a duration such as 90s, 5m or 1h30m`, "Cancel-After");
  let ms = 0;
  if (/^\d+(\.\d+)?$/.test(value)) ms = Number(value) * 1000;
  else if (!/^(\d+(\.\d+)?(ms|s|m|h))+$/.test(value)) throw bad();
  else for (const m of value.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) ms += Number(m[1]) * UNIT_MS[m[2]!]!;
  if (!(ms > 0) || ms > 7 * 24 * 3_600_000) throw bad();
  return Math.round(ms);
}
