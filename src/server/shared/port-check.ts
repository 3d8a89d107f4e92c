import { createServer } from "node:net";
import { ConfigError, toOmniError } from "../../errors/omni-error.js";

/** A port a command is about to listen on, and the flag that changes it. */
export interface PortClaim {
  host: string;
  port: number;
  flag: string;
}

/** The one-line error for a port that cannot be bound (in use, or not permitted). */
export function portError(claim: PortClaim, err: unknown): ConfigError {
  const raw = (err as { code?: unknown } | null)?.code;
  // grpc-js reports a failed bind only in its message.
  const code = raw ?? /EADDRINUSE|EACCES/.exec(String((err as Error | null)?.message))?.[0];
  const why = code === "EADDRINUSE" ? "is already in use" : code === "EACCES" ? "needs privileges this process lacks" : `cannot be bound (${String(code ?? toOmniError(err).message)})`;
  return new ConfigError(`port ${claim.port} on ${claim.host} ${why}; choose another with ${claim.flag}`, { field: claim.flag, cause: err, data: { port: claim.port, host: claim.host } });
}

/**
 * Checks that every claimed port can be bound, before anything expensive starts (worker processes, model
 * loads): a taken port is a one-line {@link ConfigError} naming the port and its flag. Port 0 (any free
 * port) always passes. The probe listens and closes at once, so the port is free again for the server.
 */
export async function assertPortsFree(claims: readonly PortClaim[]): Promise<void> {
  for (const claim of claims) {
    if (claim.port === 0) continue;
    await new Promise<void>((resolve, reject) => {
      const probe = createServer();
      probe.once("error", (err) => reject(portError(claim, err)));
      probe.listen({ host: claim.host, port: claim.port, exclusive: true }, () => probe.close(() => resolve()));
    });
  }
}
