import type { ModelLimits } from "../../core/model-limits.js";
import { closestOffered, normalizeSchedulerName, type SchedulerName } from "../../schedulers/index.js";

/** One A1111 sampler we list at `GET /sdapi/v1/samplers`, and the sampler of ours it runs. */
interface ListedSampler {
  name: string;
  aliases: string[];
  ours: SchedulerName;
  /** Ours under the `karras` schedule, where we have a Karras variant. */
  karras?: SchedulerName;
}

/** The A1111 samplers we implement, as A1111 names them (`GET /sdapi/v1/samplers`). */
export const LISTED_SAMPLERS: readonly ListedSampler[] = [
  { name: "Euler a", aliases: ["k_euler_a", "k_euler_ancestral"], ours: "euler_a" },
  { name: "Euler", aliases: ["k_euler"], ours: "euler", karras: "euler_karras" },
  { name: "DPM++ 2M", aliases: ["k_dpmpp_2m"], ours: "dpmpp_2m", karras: "dpmpp_2m_karras" },
  { name: "DDIM", aliases: ["ddim"], ours: "ddim" },
  { name: "PLMS", aliases: ["plms"], ours: "pndm" },
  { name: "LCM", aliases: ["k_lcm"], ours: "lcm" },
];

/**
 * A1111 samplers we do not implement, run by the closest one we do (same noise schedule, same order of
 * solver), so client presets that name them still work; `info.sampler_name` reports what ran.
 */
const CLOSEST: ReadonlyMap<string, string> = new Map(Object.entries({
  "dpm++ 2m sde": "DPM++ 2M",
  "dpm++ 2m sde heun": "DPM++ 2M",
  "dpm++ 3m sde": "DPM++ 2M",
  "dpm++ sde": "DPM++ 2M",
  "dpm++ 2s a": "Euler a",
  "dpm2 a": "Euler a",
  "dpm2": "Euler",
  heun: "Euler",
  lms: "Euler",
  restart: "Euler",
  "dpm fast": "Euler",
  "dpm adaptive": "Euler",
  unipc: "DPM++ 2M",
  "ddim cfg++": "DDIM",
  "euler cfg++": "Euler",
  "euler a cfg++": "Euler a",
}));

/** The schedules of `GET /sdapi/v1/schedulers` (A1111's names and labels). Only `karras` changes what runs. */
export const A1111_SCHEDULES: readonly { name: string; label: string }[] = [
  { name: "automatic", label: "Automatic" },
  { name: "uniform", label: "Uniform" },
  { name: "karras", label: "Karras" },
  { name: "exponential", label: "Exponential" },
  { name: "polyexponential", label: "Polyexponential" },
  { name: "sgm_uniform", label: "SGM Uniform" },
  { name: "kl_optimal", label: "KL Optimal" },
  { name: "align_your_steps", label: "Align Your Steps" },
  { name: "simple", label: "Simple" },
  { name: "normal", label: "Normal" },
  { name: "ddim", label: "DDIM" },
  { name: "beta", label: "Beta" },
];

/** The outcome of resolving a client's `sampler_name` + `scheduler`. */
export interface SamplerChoice {
  /** Our scheduler to run; null: the model's default. */
  scheduler: SchedulerName | null;
  /** Found in neither table: the caller answers 400 naming the valid names. */
  unknown: boolean;
}

const lower = (s: string) => s.trim().toLowerCase();

/**
 * Maps A1111's `sampler_name` (or legacy `sampler_index`) and `scheduler` to one of our samplers, as A1111
 * 1.9+ does: an old-style name with a schedule suffix ("DPM++ 2M Karras") is split into sampler and
 * schedule; names match case-insensitively, aliases included. Empty or "Automatic" → the model's default.
 */
export function chooseSampler(samplerName: string | null | undefined, schedule: string | null | undefined): SamplerChoice {
  let name = lower(samplerName ?? "");
  let karras = lower(schedule ?? "") === "karras";
  for (const s of A1111_SCHEDULES) {
    const suffix = ` ${s.label.toLowerCase()}`;
    if (name.endsWith(suffix)) {
      name = name.slice(0, -suffix.length);
      karras ||= s.name === "karras";
      break;
    }
  }
  if (name === "" || name === "automatic") return { scheduler: null, unknown: false };
  const listed = (n: string) => LISTED_SAMPLERS.find((s) => s.name.toLowerCase() === n || s.aliases.includes(n));
  // A Map, not an object: a client's "__proto__" or "constructor" must not find Object.prototype's members.
  const closest = CLOSEST.get(name);
  const s = listed(name) ?? (closest ? listed(closest.toLowerCase()) : undefined);
  if (!s) return { scheduler: null, unknown: true };
  return { scheduler: karras && s.karras ? s.karras : s.ours, unknown: false };
}

/** The A1111 name of one of our samplers (for `info.sampler_name`), or our own name when A1111 has none. */
export function a1111SamplerName(ours: string): string {
  const key = normalizeSchedulerName(ours);
  const s = LISTED_SAMPLERS.find((x) => x.ours === key || x.karras === key);
  return s ? s.name : ours;
}

/** A1111's `Schedule type` of one of our samplers. */
export function a1111ScheduleLabel(ours: string): string {
  return normalizeSchedulerName(ours).endsWith("_karras") ? "Karras" : "Automatic";
}

/**
 * Ours to run for a client's choice on this model: the choice when the model offers it, else its closest offered
 * substitute ("PLMS" → DDIM where a model does not offer PLMS), else null (the model's default sampler).
 */
export function samplerForModel(choice: SchedulerName | null, limits: Pick<ModelLimits, "schedulers"> | null): SchedulerName | null {
  if (!choice || !limits) return choice;
  return closestOffered(choice, limits.schedulers);
}

/** One entry of `GET /sdapi/v1/samplers`; `options` says what runs instead where the model does not offer ours. */
export interface A1111SamplerItem {
  name: string;
  aliases: string[];
  options: Record<string, string>;
}

/**
 * `GET /sdapi/v1/samplers` for this model: every A1111 name we take. Where the model does not offer the sampler
 * behind a name (with or without the Karras schedule), `options` names what runs instead (`runs_as`, or
 * `karras_runs_as`) and why (`note`), so a client's sampler menu can tell.
 */
export function a1111SamplerList(limits: Pick<ModelLimits, "schedulers" | "predictionType" | "unfitSchedulers"> | null): A1111SamplerItem[] {
  return LISTED_SAMPLERS.map((s) => {
    const options: Record<string, string> = {};
    const notes: string[] = [];
    for (const [ours, key] of [[s.ours, "runs_as"], [s.karras, "karras_runs_as"]] as const) {
      if (!ours || !limits || limits.schedulers.includes(ours)) continue;
      const instead = closestOffered(ours, limits.schedulers);
      options[key] = instead ? a1111SamplerName(instead) + (a1111ScheduleLabel(instead) === "Karras" ? " Karras" : "") : "the model's default sampler";
      const reason = limits.unfitSchedulers && Object.hasOwn(limits.unfitSchedulers, ours) ? limits.unfitSchedulers[ours] : `${ours} does not fit prediction type ${limits.predictionType}`;
      notes.push(`${ours} is not offered for this model: ${reason}`);
    }
    if (notes.length) options.note = notes.join("; ");
    return { name: s.name, aliases: s.aliases, options };
  });
}
