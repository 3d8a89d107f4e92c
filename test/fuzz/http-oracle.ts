/**
 * The fuzz suite's verdict on one HTTP answer: what breaks the contract (a 5xx, an internal error in the
 * body, no answer, a cross-site POST served) and what is the right answer to what was sent (a 504 to a
 * request whose own deadline passed).
 */

const HTTP_STATUS = /^HTTP\/1\.1 (\d{3})/;
const INTERNAL_IN_BODY = /OMNI_ERR_INTERNAL|"code":"internal"/;
const TIMEOUT_IN_BODY = /"code":\s*"OMNI_ERR_TIMEOUT"/;

/**
 * The deadline a request carried, in ms, when the server takes it as one: `x-omni-timeout-ms` or SageMaker's
 * `timeout_ms` custom attribute, an integer in [1, 86400000] (how the worker parses both); else undefined.
 */
export function carriedDeadline(headers: readonly (readonly [string, string])[]): number | undefined {
  for (const [k, v] of headers) {
    const name = k.toLowerCase();
    const raw = name === "x-omni-timeout-ms" ? v : name === "x-amzn-sagemaker-custom-attributes" ? /(?:^|,)\s*timeout_ms=([^,]*)/.exec(v)?.[1] : undefined;
    if (raw === undefined || raw.trim() === "") continue;
    const n = Number(raw);
    if (Number.isInteger(n) && n >= 1 && n <= 86_400_000) return n;
  }
  return undefined;
}

/** What was sent, as far as the verdict needs it. */
export interface SentRequest {
  /** The request's own deadline ({@link carriedDeadline}). */
  deadlineMs?: number | undefined;
  /** A POST "from another site's page" (Origin / Sec-Fetch-Site). */
  crossSite?: boolean;
}

/**
 * The problem with an answer, or null when it keeps the contract. A 504 carrying a `TimeoutError` is right
 * for a request whose deadline was shorter than the hang guard: the worker stops it when the deadline
 * passes, as asked (bench/fuzz.ts once counted such an answer to `x-omni-timeout-ms: 1` as a finding).
 */
export function httpAnswerProblem(answer: { text: string; hung: boolean }, sent: SentRequest, opts: { hangMs: number; refusesCrossSite?: boolean }): string | null {
  const { text, hung } = answer;
  if (hung) return `no answer within ${opts.hangMs} ms`;
  const status = Number(HTTP_STATUS.exec(text)?.[1] ?? 0);
  if (status === 0) return "closed without an HTTP answer";
  const ownDeadline = status === 504 && sent.deadlineMs !== undefined && sent.deadlineMs < opts.hangMs && TIMEOUT_IN_BODY.test(text);
  if (status >= 500 && !ownDeadline) return `status ${status}`;
  if (INTERNAL_IN_BODY.test(text)) return "an internal error in the body";
  if (sent.crossSite && opts.refusesCrossSite && status >= 200 && status < 300) return `a cross-site POST was served (${status})`;
  return null;
}
