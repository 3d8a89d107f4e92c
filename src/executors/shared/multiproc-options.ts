import { ConfigError } from "../../errors/omni-error.js";

const DEFAULTS = {
  healthTimeoutMs: 10_000,
  shutdownGraceMs: 5_000,
  maxRestartAttempts: 3,
  restartBackoffMs: 250,
  /** How often each worker process reports that it is alive, ms (0 turns heartbeats off). */
  heartbeatIntervalMs: 1_000,
  /** A worker silent this long (stopped, frozen, swapped out) is SIGKILLed and replaced, ms. */
  heartbeatTimeoutMs: 10_000,
};

/** The `executorOptions` of the multi-process executor, defaults applied. */
export type MultiprocOptions = typeof DEFAULTS;

/** The `executorOptions` of the in-process executor, defaults applied. */
export const UNIPROC_DEFAULTS = { healthTimeoutMs: 10_000 };

/**
 * Reads a local executor's `executorOptions`, all numbers >= 0 with `defaults`; throws ConfigError naming a
 * bad value or an unknown name (a typo must not fall back to a default silently) before any process starts.
 */
export function readLocalOptions<D extends Record<string, number>>(options: Record<string, unknown>, defaults: D, executor: string): D {
  const known = Object.keys(defaults);
  const unknown = Object.keys(options).filter((k) => !known.includes(k));
  if (unknown.length) {
    throw new ConfigError(`unknown executorOptions for ${executor}: ${unknown.join(", ")} (known: ${known.join(", ")})`, {
      field: `executorOptions.${unknown[0]}`,
      data: { unknown, known },
    });
  }
  const out: Record<string, number> = { ...defaults };
  for (const name of known) {
    const v = options[name];
    if (v === undefined) continue;
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0) {
      throw new ConfigError(`executorOptions.${name} must be a number >= 0, got ${JSON.stringify(v)}`, { field: `executorOptions.${name}` });
    }
    out[name] = v;
  }
  return out as D;
}

/** Reads the multi-process executor's `executorOptions` ({@link readLocalOptions}); the heartbeat deadline must exceed its interval. */
export function readMultiprocOptions(options: Record<string, unknown>): MultiprocOptions {
  const o = readLocalOptions(options, DEFAULTS, "MultiprocExecutor");
  if (o.heartbeatIntervalMs > 0 && o.heartbeatTimeoutMs <= o.heartbeatIntervalMs) {
    throw new ConfigError(
      `executorOptions.heartbeatTimeoutMs (${o.heartbeatTimeoutMs}) must be larger than heartbeatIntervalMs (${o.heartbeatIntervalMs}), or set heartbeatIntervalMs to 0 to turn heartbeats off`,
      { field: "executorOptions.heartbeatTimeoutMs" },
    );
  }
  return o;
}
