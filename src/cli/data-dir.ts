import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { InvalidArgumentError } from "commander";

/**
 * Where `serve` keeps predictions without `--data-dir`: `OMNI_DIFFUSION_DATA_DIR`, else the XDG data dir
 * (`$XDG_DATA_HOME/omni-diffusion`, `~/.local/share/omni-diffusion`).
 */
export function defaultDataDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.OMNI_DIFFUSION_DATA_DIR) return resolve(env.OMNI_DIFFUSION_DATA_DIR);
  const base = env.XDG_DATA_HOME && env.XDG_DATA_HOME.startsWith("/") ? env.XDG_DATA_HOME : join(homedir(), ".local", "share");
  return join(base, "omni-diffusion");
}

const UNIT_MS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A duration with its unit (`90s`, `30m`, `24h`, `7d`), in ms; at least one second. */
export function durationArg(v: string): number {
  const m = /^(\d+(?:\.\d+)?)(s|m|h|d)$/.exec(v.trim());
  const ms = m ? Math.round(Number(m[1]) * UNIT_MS[m[2]!]!) : NaN;
  if (!(ms >= 1_000) || !Number.isSafeInteger(ms)) throw new InvalidArgumentError(`expected a duration with its unit, at least 1s: 90s, 30m, 24h, 7d; got "${v}"`);
  return ms;
}
