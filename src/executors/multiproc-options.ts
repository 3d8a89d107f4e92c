import { ConfigError } from "../errors/omni-error.js";

const DEFAULTS = { healthTimeoutMs: 10_000, shutdownGraceMs: 5_000, maxRestartAttempts: 3, restartBackoffMs: 250 };

/** The `executorOptions` of the multi-process executor, defaults applied. */
export type MultiprocOptions = typeof DEFAULTS;

/** Reads the multi-process executor's `executorOptions`; throws ConfigError naming a bad value before any process starts. */
export function readMultiprocOptions(options: Record<string, unknown>): MultiprocOptions {
  const out = { ...DEFAULTS };
  for (const name of Object.keys(DEFAULTS) as (keyof MultiprocOptions)[]) {
    const v = options[name];
    if (v === undefined) continue;
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0) {
      throw new ConfigError(`executorOptions.${name} must be a number >= 0, got ${JSON.stringify(v)}`, { field: `executorOptions.${name}` });
    }
    out[name] = v;
  }
  return out;
}
