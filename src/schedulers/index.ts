/**
 * Scheduler registry: turns a sampler name (or a model's scheduler_config.json `_class_name`) into a
 * fresh {@link Scheduler}. Schedulers carry per-request state, so create one per request.
 */
import { ValidationError } from "../errors/omni-error.js";
import { DdimScheduler } from "./ddim.js";
import { DpmSolverMultistepScheduler } from "./dpm-solver-multistep.js";
import { EulerAncestralScheduler } from "./euler-ancestral.js";
import { EulerDiscreteScheduler } from "./euler-discrete.js";
import { FlowMatchEulerScheduler } from "./flow-match-euler.js";
import { LcmScheduler } from "./lcm.js";
import { PndmScheduler } from "./pndm.js";
import type { PredictionType } from "./scheduler-config.js";
import type { Scheduler, SchedulerConfig } from "./types.js";

// Re-exports: the interface, the step-count check and each sampler class (documented at their definitions).
export type { NoiseSource, Scheduler, SchedulerConfig, SetTimestepsOptions } from "./types.js";
export { validateNumSteps } from "./scheduler-config.js";
export { DdimScheduler } from "./ddim.js";
export { DpmSolverMultistepScheduler } from "./dpm-solver-multistep.js";
export { EulerAncestralScheduler } from "./euler-ancestral.js";
export { EulerDiscreteScheduler } from "./euler-discrete.js";
export { FlowMatchEulerScheduler, calculateShift } from "./flow-match-euler.js";
export { LcmScheduler } from "./lcm.js";
export { PndmScheduler } from "./pndm.js";

const FACTORIES = {
  euler: (c: SchedulerConfig) => new EulerDiscreteScheduler(c, "euler"),
  euler_karras: (c: SchedulerConfig) => new EulerDiscreteScheduler({ ...c, use_karras_sigmas: true }, "euler_karras"),
  euler_a: (c: SchedulerConfig) => new EulerAncestralScheduler(c, "euler_a"),
  euler_ancestral: (c: SchedulerConfig) => new EulerAncestralScheduler(c, "euler_ancestral"),
  ddim: (c: SchedulerConfig) => new DdimScheduler(c, "ddim"),
  dpmpp_2m: (c: SchedulerConfig) => new DpmSolverMultistepScheduler(c, "dpmpp_2m"),
  dpmpp_2m_karras: (c: SchedulerConfig) => new DpmSolverMultistepScheduler({ ...c, use_karras_sigmas: true }, "dpmpp_2m_karras"),
  lcm: (c: SchedulerConfig) => new LcmScheduler(c, "lcm"),
  pndm: (c: SchedulerConfig) => new PndmScheduler(c, "pndm"),
  flow_euler: (c: SchedulerConfig) => new FlowMatchEulerScheduler(c, "flow_euler"),
} satisfies Record<string, (c: SchedulerConfig) => Scheduler>;

/** Prediction types each sampler drives, as its class declares them (`static predictionTypes`). */
const PREDICTION_TYPES: Readonly<Record<keyof typeof FACTORIES, readonly PredictionType[]>> = {
  euler: EulerDiscreteScheduler.predictionTypes,
  euler_karras: EulerDiscreteScheduler.predictionTypes,
  euler_a: EulerAncestralScheduler.predictionTypes,
  euler_ancestral: EulerAncestralScheduler.predictionTypes,
  ddim: DdimScheduler.predictionTypes,
  dpmpp_2m: DpmSolverMultistepScheduler.predictionTypes,
  dpmpp_2m_karras: DpmSolverMultistepScheduler.predictionTypes,
  lcm: LcmScheduler.predictionTypes,
  pndm: PndmScheduler.predictionTypes,
  flow_euler: FlowMatchEulerScheduler.predictionTypes,
};

/**
 * The sampler names that can drive a model of `predictionType` (`epsilon`, `v_prediction`, `sample`,
 * `flow_prediction`); the others are refused at validation, naming these. With the model's scheduler config,
 * the samplers it declares unfit ({@link unfitSchedulers}) are left out too.
 */
export function schedulersFor(predictionType: string, config?: SchedulerConfig | null): SchedulerName[] {
  const unfit = config ? unfitSchedulers(config) : {};
  return SCHEDULER_NAMES.filter((n) => (PREDICTION_TYPES[n] as readonly string[]).includes(predictionType) && !Object.hasOwn(unfit, n));
}

/** The scheduler_config.json key where a model names the samplers it must not be offered, each with the reason. */
export const UNFIT_SAMPLERS_KEY = "_omni_unfit_samplers";

/**
 * The samplers a model's scheduler config declares unfit (`"_omni_unfit_samplers": { "pndm": "why" }`): ones that
 * fit its prediction type but were measured to draw wrong images on this model at the step counts it is used at.
 * A private key (leading underscore), which diffusers ignores. Anything but an object of known sampler names to
 * non-empty reasons is a ValidationError naming the key.
 */
export function unfitSchedulers(config: SchedulerConfig): Record<string, string> {
  const raw = config[UNFIT_SAMPLERS_KEY];
  if (raw === undefined || raw === null) return {};
  const bad = (message: string) =>
    new ValidationError(`scheduler config ${UNFIT_SAMPLERS_KEY}: ${message}`, { field: "scheduler", data: { key: UNFIT_SAMPLERS_KEY } });
  if (typeof raw !== "object" || Array.isArray(raw)) throw bad(`must be an object of sampler name → reason, got ${JSON.stringify(raw)}`);
  const out: Record<string, string> = {};
  for (const [name, reason] of Object.entries(raw as Record<string, unknown>)) {
    const key = normalizeSchedulerName(name);
    if (!Object.hasOwn(FACTORIES, key)) throw bad(`unknown sampler "${name}" (known: ${SCHEDULER_NAMES.join(", ")})`);
    if (typeof reason !== "string" || reason.trim() === "") throw bad(`the reason for "${name}" must be a non-empty string`);
    out[key] = reason;
  }
  return out;
}

/**
 * Where a client names a sampler by a product's name (A1111's "PLMS", "DPM++ 2M Karras") and the model does not
 * offer ours, the closest it does, first that fits: the same solver without Karras sigmas, or for PLMS the DDIM
 * update its multistep extrapolation is built on.
 */
const SUBSTITUTES: Readonly<Partial<Record<SchedulerName, readonly SchedulerName[]>>> = {
  pndm: ["ddim", "dpmpp_2m"],
  dpmpp_2m_karras: ["dpmpp_2m", "euler_karras"],
  euler_karras: ["euler", "dpmpp_2m_karras"],
  euler_ancestral: ["euler_a"],
  euler_a: ["euler_ancestral"],
};

/** The sampler to run for `name` on a model offering `offered`: itself when offered, else its closest offered substitute, else null. */
export function closestOffered(name: string, offered: readonly string[]): SchedulerName | null {
  const key = normalizeSchedulerName(name);
  if (!Object.hasOwn(FACTORIES, key)) return null;
  if (offered.includes(key)) return key as SchedulerName;
  return SUBSTITUTES[key as SchedulerName]?.find((s) => offered.includes(s)) ?? null;
}

/**
 * Why `scheduler` cannot run on a model, for the 400 that refuses it: the model's own reason where its config
 * declares the sampler unfit, else the prediction type it does not drive; then the samplers that do fit.
 */
export function schedulerMisfitMessage(scheduler: string, model: { predictionType: string; schedulers: readonly string[]; unfitSchedulers?: Readonly<Record<string, string>> }): string {
  const key = normalizeSchedulerName(scheduler);
  const reason = model.unfitSchedulers && Object.hasOwn(model.unfitSchedulers, key) ? model.unfitSchedulers[key] : undefined;
  const why = reason ? `is not offered for this model: ${reason}` : `does not fit this model (prediction type ${model.predictionType})`;
  return `scheduler "${scheduler}" ${why}; use one of: ${model.schedulers.join(", ")}`;
}

/** A registered sampler name. */
export type SchedulerName = keyof typeof FACTORIES;

/** Every name {@link createScheduler} accepts. */
export const SCHEDULER_NAMES = Object.keys(FACTORIES) as SchedulerName[];

/**
 * diffusers class → our sampler when no name is given. Classes we don't implement map to the closest
 * sampler trained-compatible with the same noise schedule (DDPM → DDIM, LMS/Heun/KDPM2 → Euler,
 * UniPC/DEIS/single-step DPM → DPM-Solver++ 2M); `use_karras_sigmas` in the config is honoured either way.
 */
export const CLASS_NAME_TO_SCHEDULER: Readonly<Record<string, SchedulerName>> = {
  DDIMScheduler: "ddim",
  DDPMScheduler: "ddim",
  PNDMScheduler: "pndm",
  EulerDiscreteScheduler: "euler",
  LMSDiscreteScheduler: "euler",
  HeunDiscreteScheduler: "euler",
  KDPM2DiscreteScheduler: "euler",
  EulerAncestralDiscreteScheduler: "euler_a",
  KDPM2AncestralDiscreteScheduler: "euler_a",
  DPMSolverMultistepScheduler: "dpmpp_2m",
  DPMSolverSinglestepScheduler: "dpmpp_2m",
  UniPCMultistepScheduler: "dpmpp_2m",
  DEISMultistepScheduler: "dpmpp_2m",
  LCMScheduler: "lcm",
  FlowMatchEulerDiscreteScheduler: "flow_euler",
};

/** Accepts "Euler-A", " dpmpp_2m_karras " etc.: case and `-` vs `_` don't matter. */
export function normalizeSchedulerName(name: string): string {
  return name.trim().toLowerCase().replace(/-/g, "_");
}

/** True when `name` is a registered sampler (after the same normalisation createScheduler applies). */
export function isSchedulerName(name: string): boolean {
  return Object.hasOwn(FACTORIES, normalizeSchedulerName(name));
}

/**
 * Builds a scheduler. `name` picks the sampler; null/undefined picks it from `config._class_name`.
 * Throws {@link ValidationError} (`field: "scheduler"`) for an unknown name or class, or a bad config.
 */
export function createScheduler(name: string | null | undefined, config: SchedulerConfig | null | undefined): Scheduler {
  const cfg: SchedulerConfig = config ?? {};
  let key: string;
  if (name === null || name === undefined || name.trim() === "") {
    const cls = cfg._class_name;
    // hasOwn: `_class_name` comes from a model's file (maybe a pulled one): "constructor" must not match.
    const mapped = typeof cls === "string" && Object.hasOwn(CLASS_NAME_TO_SCHEDULER, cls) ? CLASS_NAME_TO_SCHEDULER[cls] : undefined;
    if (!mapped) {
      throw new ValidationError(
        `no scheduler name given and scheduler config _class_name ${cls === undefined ? "is missing" : `"${String(cls)}" is not supported`}; ` +
          `pass one of: ${SCHEDULER_NAMES.join(", ")}`,
        { field: "scheduler", data: { className: cls ?? null, known: SCHEDULER_NAMES } },
      );
    }
    key = mapped;
  } else {
    key = normalizeSchedulerName(name);
  }
  if (!Object.hasOwn(FACTORIES, key)) {
    throw new ValidationError(`unknown scheduler "${String(name)}"; known: ${SCHEDULER_NAMES.join(", ")}`, {
      field: "scheduler",
      data: { known: SCHEDULER_NAMES },
    });
  }
  return FACTORIES[key as SchedulerName](cfg);
}
