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
import type { PredictionType } from "./math.js";
import type { Scheduler, SchedulerConfig } from "./types.js";

// Re-exports: the interface, the step-count check and each sampler class (documented at their definitions).
export type { NoiseSource, Scheduler, SchedulerConfig, SetTimestepsOptions } from "./types.js";
export { validateNumSteps } from "./math.js";
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
 * `flow_prediction`); the others are refused at validation, naming these.
 */
export function schedulersFor(predictionType: string): SchedulerName[] {
  return SCHEDULER_NAMES.filter((n) => (PREDICTION_TYPES[n] as readonly string[]).includes(predictionType));
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
