/**
 * A scheduler config as the samplers read it (diffusers' `ConfigMixin` defaults merged under the model's keys, each
 * key checked) and the checks every sampler shares: step counts, timesteps in range, model outputs of the sample's
 * size. The numbers themselves live in math.ts.
 */
import { ValidationError } from "../errors/omni-error.js";
import type { SchedulerConfig } from "./types.js";

/** Beta schedules diffusers ships (plus `trained_betas`, which overrides them). */
export const BETA_SCHEDULES = ["linear", "scaled_linear", "squaredcos_cap_v2"] as const;
/** How inference timesteps are laid over the training range (diffusers `timestep_spacing`). */
export const TIMESTEP_SPACINGS = ["linspace", "leading", "trailing"] as const;
/** What the model predicts: noise, velocity (v), the clean sample, or a flow velocity. */
export type PredictionType = NonNullable<SchedulerConfig["prediction_type"]>;
/** Prediction types of the variance-preserving samplers (DDIM, DPM-Solver, Euler, LCM). */
export const VP_PREDICTION_TYPES: readonly PredictionType[] = ["epsilon", "v_prediction", "sample"];
/** One of {@link TIMESTEP_SPACINGS}. */
export type TimestepSpacing = (typeof TIMESTEP_SPACINGS)[number];

/** A config with every key a sampler reads filled in (class defaults merged under the user's keys). */
export type ResolvedSchedulerConfig = SchedulerConfig &
  Required<
    Pick<
      SchedulerConfig,
      | "num_train_timesteps"
      | "beta_start"
      | "beta_end"
      | "beta_schedule"
      | "trained_betas"
      | "prediction_type"
      | "timestep_spacing"
      | "steps_offset"
      | "rescale_betas_zero_snr"
    >
  >;

/** diffusers' `ConfigMixin` defaults shared by the DDPM-family schedulers (each class overrides a few). */
export const BASE_DEFAULTS: ResolvedSchedulerConfig = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear",
  trained_betas: null,
  prediction_type: "epsilon",
  timestep_spacing: "linspace",
  steps_offset: 0,
  rescale_betas_zero_snr: false,
};

function configError(key: string, message: string): ValidationError {
  return new ValidationError(`scheduler config ${key}: ${message}`, { field: "scheduler", data: { key } });
}

/**
 * Merges `config` over `defaults` like diffusers' `from_config`: keys that are absent, `undefined` or
 * `null` keep the class default (scheduler_config.json files often carry `null` for "unset"), unknown keys
 * are kept but ignored. Then checks the keys every sampler reads, so a bad file fails at load, not mid-run.
 */
export function resolveConfig<T extends ResolvedSchedulerConfig>(
  defaults: T,
  config: SchedulerConfig | null | undefined,
  allowedPredictionTypes: readonly PredictionType[],
): T {
  const out: Record<string, unknown> = { ...defaults };
  for (const [k, v] of Object.entries(config ?? {})) {
    if (v !== undefined && v !== null) out[k] = v;
  }
  const c = out as T;
  const T_ = c.num_train_timesteps;
  if (typeof T_ !== "number" || !Number.isInteger(T_) || T_ < 2) {
    throw configError("num_train_timesteps", `must be an integer >= 2, got ${String(T_)}`);
  }
  if (!(BETA_SCHEDULES as readonly string[]).includes(c.beta_schedule)) {
    throw configError("beta_schedule", `unsupported "${String(c.beta_schedule)}" (known: ${BETA_SCHEDULES.join(", ")})`);
  }
  if (!(TIMESTEP_SPACINGS as readonly string[]).includes(c.timestep_spacing)) {
    throw configError("timestep_spacing", `unsupported "${String(c.timestep_spacing)}" (known: ${TIMESTEP_SPACINGS.join(", ")})`);
  }
  if (!allowedPredictionTypes.includes(c.prediction_type)) {
    throw configError(
      "prediction_type",
      `unsupported "${String(c.prediction_type)}" for this scheduler (known: ${allowedPredictionTypes.join(", ")})`,
    );
  }
  for (const key of ["beta_start", "beta_end", "steps_offset"] as const) {
    if (typeof c[key] !== "number" || !Number.isFinite(c[key])) throw configError(key, `must be a finite number, got ${String(c[key])}`);
  }
  // The Karras range override (EulerDiscreteScheduler's keys; see karrasRange). null / absent = the schedule's ends.
  for (const key of ["sigma_min", "sigma_max"] as const) {
    const v = c[key];
    if (v !== undefined && v !== null && !(typeof v === "number" && Number.isFinite(v) && v > 0)) {
      throw configError(key, `must be a positive number (or null for the schedule's own), got ${JSON.stringify(v)}`);
    }
  }
  if (typeof c.sigma_min === "number" && typeof c.sigma_max === "number" && !(c.sigma_min < c.sigma_max)) {
    throw configError("sigma_min", `must be below sigma_max (${c.sigma_max}), got ${c.sigma_min}`);
  }
  if (c.trained_betas !== null) {
    const tb = c.trained_betas;
    if (!Array.isArray(tb) || tb.length !== T_ || tb.some((b) => typeof b !== "number" || !(b >= 0 && b < 1))) {
      throw configError("trained_betas", `must be ${T_} numbers in [0, 1)`);
    }
  }
  return c;
}

/**
 * For samplers that index ᾱ by training timestep (DDIM, PNDM): refuses a step count whose spaced timesteps
 * (with `steps_offset`) run past the last training timestep, as 1000 steps with steps_offset 1 do on a
 * 1000-timestep schedule. Caught when the request is checked (a 400 naming the field), not at its first step.
 */
export function checkTimestepsInRange(schedulerName: string, timesteps: readonly number[], numTrainTimesteps: number, numInferenceSteps: number, stepsOffset: number): void {
  const last = Math.max(...timesteps);
  if (last < numTrainTimesteps) return;
  throw new ValidationError(
    `num_inference_steps (${numInferenceSteps}) is too many for scheduler "${schedulerName}" on this model: with steps_offset ${stepsOffset} its timesteps reach ${last}, past the last of the model's ${numTrainTimesteps} training timesteps; ask for at most ${numInferenceSteps - 1}`,
    { field: "num_inference_steps" },
  );
}

/**
 * Checks a requested step count. More steps than training timesteps would repeat timesteps (and, for
 * some spacings, produce negative ones), so diffusers refuses it too.
 */
export function validateNumSteps(numInferenceSteps: number, numTrainTimesteps: number): void {
  if (typeof numInferenceSteps !== "number" || !Number.isInteger(numInferenceSteps) || numInferenceSteps < 1) {
    throw new ValidationError(`num_inference_steps must be an integer >= 1, got ${String(numInferenceSteps)}`, {
      field: "num_inference_steps",
    });
  }
  if (numInferenceSteps > numTrainTimesteps) {
    throw new ValidationError(
      `num_inference_steps (${numInferenceSteps}) cannot exceed the scheduler's num_train_timesteps (${numTrainTimesteps})`,
      { field: "num_inference_steps" },
    );
  }
}

/** Rejects a model output whose size differs from the sample's (a wrong latent shape would silently broadcast in torch). */
export function assertSameLength(modelOutput: Float32Array, sample: Float32Array): void {
  if (modelOutput.length !== sample.length) {
    throw new ValidationError(`model output has ${modelOutput.length} values but the sample has ${sample.length}`, {
      field: "model_output",
    });
  }
}
