import { TransportError } from "./omni-error.js";

/**
 * Socket-level failures (refused, reset, closed midway, DNS) as a retryable TransportError naming the
 * endpoint and the errno. In errors/ because every HTTP client needs it: the remote executors, SageMaker
 * and the Hub client.
 */
export function connectionError(err: unknown, endpoint: string): TransportError {
  const code = (err as { code?: unknown } | null)?.code;
  const cause = (err as { cause?: { code?: unknown } } | null)?.cause;
  const sys = typeof code === "string" ? code : typeof cause?.code === "string" ? cause.code : "ERR";
  return new TransportError(`${endpoint}: ${sys}: ${(err as Error)?.message ?? String(err)}`, { cause: err, data: { endpoint, errno: sys } });
}
