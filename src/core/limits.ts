/**
 * The one place a request is checked against the deployment's limits and the loaded model. The engine
 * calls {@link checkRequestLimits} once, when it takes a request, with the caller's own tighter limits and
 * field names (see {@link FieldNamer}: a CLI flag, an OpenAI parameter, a worker call's `requests.<i>.`
 * path), so every entry point accepts and refuses the same requests with the same messages. Entry points
 * call it earlier only before costly work: the CLI before a model loads, the OpenAI edits route before it
 * resizes an upload, the A1111 planner to pick its size.
 *
 * A request that fails here is refused before it is queued, so no tensor is ever allocated for a size the
 * model cannot serve.
 */
import { LimitExceededError, ValidationError } from "../errors/omni-error.js";
import { normalizeSchedulerName, schedulerMisfitMessage } from "../schedulers/index.js";
import type { ModelLimits } from "./model-limits.js";
import { describeWorkerBytes, estimateWorkerBytes } from "./memory-estimate.js";

/** What one request may ask for. Built from `OmniDiffusionConfig` by {@link requestLimitsOf}. */
export interface RequestLimits {
  /** Largest width/height; null: derived from the model (see {@link maxSizeFor}), 1024 without one. */
  maxWidth: number | null;
  maxHeight: number | null;
  maxSteps: number;
  maxOutputsPerPrompt: number;
  /** Characters of `prompt` and of `negativePrompt`. */
  maxPromptChars: number;
  /** Run sizes other than the model's native one on models whose export allows them (never trained there). */
  allowNonNativeSizes: boolean;
  /** Budget of one request's estimated peak UNet memory (see {@link estimateRequestBytes}), bytes. */
  maxRequestBytes: number;
}

/** Defaults of {@link RequestLimits}; the config schema uses the same numbers. */
export const DEFAULT_REQUEST_LIMITS: Readonly<RequestLimits> = {
  maxWidth: null,
  maxHeight: null,
  maxSteps: 150,
  maxOutputsPerPrompt: 10,
  maxPromptChars: 10_000,
  allowNonNativeSizes: false,
  maxRequestBytes: 2 * 1024 ** 3,
};

/** Largest side accepted when neither the config nor the model says (a remote executor that cannot describe its model). */
export const FALLBACK_MAX_SIDE = 1024;
/** With `allowNonNativeSizes` and no configured maximum, sides up to this multiple of the native side are accepted. */
export const NON_NATIVE_MAX_FACTOR = 4;

/** The request fields the limits look at, in their TypeScript (camelCase) names. */
export type LimitField = "prompt" | "negativePrompt" | "width" | "height" | "numInferenceSteps" | "numOutputsPerPrompt" | "scheduler";

/** The fields of a request the limits read (an {@link OmniDiffusionRequest} has them all). */
export interface LimitedRequest {
  prompt: string;
  negativePrompt?: string | null;
  width?: number | null;
  height?: number | null;
  /** An edit's init image: its size is the request's size when width/height are not given. */
  image?: { width: number; height: number } | null;
  numInferenceSteps?: number | null;
  numOutputsPerPrompt?: number | null;
  guidanceScale?: number | null;
  scheduler?: string | null;
}

/**
 * How a caller spells a field in messages and in the error's `field`: camelCase for TypeScript callers,
 * snake_case on the JSON wire, the OpenAI parameter (`size`, `n`) on the OpenAI server, the flag on the CLI.
 */
export type FieldNamer = (field: LimitField) => string;

/** TypeScript names (the default). */
export const camelCaseFields: FieldNamer = (f) => f;
/** The request dict's snake_case names (`num_inference_steps`). */
export const snakeCaseFields: FieldNamer = (f) => f.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
/** `namer`'s names under a path prefix, e.g. `requests.2.` for the third request of a wire call. */
export function prefixedFields(prefix: string, namer: FieldNamer = snakeCaseFields): FieldNamer {
  return (f) => `${prefix}${namer(f)}`;
}

/** Options of {@link checkRequestLimits}. */
export interface CheckOptions {
  /** How fields are named in messages and errors; default {@link camelCaseFields}. */
  fieldName?: FieldNamer;
  /** Scheduler names this build knows (without a model, an unknown name is still refused). */
  knownSchedulers?: readonly string[];
}

/**
 * The largest width and height accepted: the configured ones, else derived from the model (its native
 * size; with `allowNonNativeSizes` {@link NON_NATIVE_MAX_FACTOR} times that), else {@link FALLBACK_MAX_SIDE}.
 */
export function maxSizeFor(limits: RequestLimits, model: ModelLimits | null | undefined): { width: number; height: number } {
  const derive = (native: number | undefined) => {
    if (native === undefined) return FALLBACK_MAX_SIDE;
    return limits.allowNonNativeSizes && model?.spatial === "dynamic" ? native * NON_NATIVE_MAX_FACTOR : native;
  };
  return { width: limits.maxWidth ?? derive(model?.nativeWidth), height: limits.maxHeight ?? derive(model?.nativeHeight) };
}

/**
 * Estimated peak UNet memory of a request at `width`×`height` with `rows` UNet rows (images, doubled under
 * classifier-free guidance). An estimate, documented as such: `bytesPerRowAtNative` scales linearly with the
 * pixel count below the native size and quadratically above it, because self-attention's score matrices
 * grow with the square of the token count (a 32×32 model run at 384² measured 5.8 GB, far above a linear guess).
 */
export function estimateRequestBytes(model: ModelLimits, width: number, height: number, rows: number): number {
  const ratio = (width * height) / (model.nativeWidth * model.nativeHeight);
  return model.bytesPerRowAtNative * rows * ratio * Math.max(1, ratio);
}

/** Images of a request: `numOutputsPerPrompt`, 1 when unset. */
const imagesOf = (r: Pick<LimitedRequest, "numOutputsPerPrompt">) => r.numOutputsPerPrompt ?? 1;

/**
 * UNet rows of a request: one per image, two under classifier-free guidance (assumed unless it is off). The one
 * estimate the engine (flow control) and the step loop (admission) both size batches with.
 */
export function rowsOfRequest(r: Pick<LimitedRequest, "numOutputsPerPrompt" | "guidanceScale">): number {
  const guided = r.guidanceScale !== null && r.guidanceScale !== undefined && r.guidanceScale <= 1 ? 1 : 2;
  return (r.numOutputsPerPrompt ?? 1) * guided;
}

/**
 * Checks `request` against `limits` and, when given, the loaded model's {@link ModelLimits}. Throws a
 * {@link LimitExceededError} (`data.reason: "limit_exceeded"`, HTTP 400) for a value beyond a limit, naming the
 * limit and what is allowed, or a {@link ValidationError} (`data.reason` `invalid_value`, `invalid_size`,
 * `unsupported_value`) for a value the model cannot take; `field` is named by `opts.fieldName`.
 *
 * @example
 * checkRequestLimits({ prompt: "a red circle", width: 64, height: 64 }, DEFAULT_REQUEST_LIMITS, model, { fieldName: snakeCaseFields });
 */
export function checkRequestLimits(request: LimitedRequest, limits: RequestLimits, model?: ModelLimits | null, opts: CheckOptions = {}): void {
  const name = opts.fieldName ?? camelCaseFields;
  const invalid = (field: LimitField, reason: string, message: string, data: Record<string, unknown> = {}) =>
    new ValidationError(message, { field: name(field), data: { reason, ...data } });
  const exceeded = (field: LimitField, message: string, data: Record<string, unknown>) => new LimitExceededError(message, { field: name(field), data });

  if (typeof request.prompt !== "string" || request.prompt.trim() === "") {
    throw invalid("prompt", "invalid_value", `${name("prompt")} must not be empty`);
  }
  for (const field of ["prompt", "negativePrompt"] as const) {
    const len = request[field]?.length ?? 0;
    if (len > limits.maxPromptChars) {
      throw exceeded(field, `${name(field)} has ${len} characters; the limit is ${limits.maxPromptChars}`, { limit: limits.maxPromptChars });
    }
  }
  const steps = request.numInferenceSteps;
  if (steps !== null && steps !== undefined) {
    if (!Number.isInteger(steps) || steps < 1) throw invalid("numInferenceSteps", "invalid_value", `${name("numInferenceSteps")} must be an integer >= 1, got ${steps}`);
    if (steps > limits.maxSteps) {
      throw exceeded("numInferenceSteps", `${name("numInferenceSteps")} is ${steps}; at most ${limits.maxSteps} steps are allowed`, { limit: limits.maxSteps });
    }
  }
  const n = request.numOutputsPerPrompt ?? 1;
  if (!Number.isInteger(n) || n < 1) throw invalid("numOutputsPerPrompt", "invalid_value", `${name("numOutputsPerPrompt")} must be an integer >= 1, got ${n}`);
  if (n > limits.maxOutputsPerPrompt) {
    throw exceeded("numOutputsPerPrompt", `${name("numOutputsPerPrompt")} is ${n}; at most ${limits.maxOutputsPerPrompt} images per request are allowed`, {
      limit: limits.maxOutputsPerPrompt,
    });
  }
  checkScheduler(request.scheduler, model, opts.knownSchedulers, (reason, message, data) => invalid("scheduler", reason, message, data));
  checkSize(request, limits, model, name, invalid, exceeded);
}

function checkScheduler(
  scheduler: string | null | undefined,
  model: ModelLimits | null | undefined,
  known: readonly string[] | undefined,
  invalid: (reason: string, message: string, data: Record<string, unknown>) => ValidationError,
): void {
  if (scheduler === null || scheduler === undefined) return;
  const key = normalizeSchedulerName(scheduler);
  if (known && !known.includes(key)) {
    throw invalid("unsupported_value", `Unknown scheduler '${scheduler}'; use one of: ${known.join(", ")}`, { allowed: known });
  }
  if (model && !model.schedulers.includes(key)) {
    throw invalid("unsupported_value", schedulerMisfitMessage(scheduler, model), { allowed: model.schedulers });
  }
}

function checkSize(
  r: LimitedRequest,
  limits: RequestLimits,
  model: ModelLimits | null | undefined,
  name: FieldNamer,
  invalid: (field: LimitField, reason: string, message: string, data?: Record<string, unknown>) => ValidationError,
  exceeded: (field: LimitField, message: string, data: Record<string, unknown>) => LimitExceededError,
): void {
  const max = maxSizeFor(limits, model);
  // An edit without width/height runs at its image's size (the pipeline's rule), so that size is what is checked.
  const width = r.width ?? r.image?.width ?? model?.nativeWidth ?? null;
  const height = r.height ?? r.image?.height ?? model?.nativeHeight ?? null;
  const size = `${width ?? "(default)"}x${height ?? "(default)"}`;
  const allowed = () => (model ? `; allowed: ${allowedSizes(model, limits, max)}` : "");
  const overMax = (configuredOnly: boolean) => {
    for (const [field, v, m, configured] of [["width", width, max.width, limits.maxWidth], ["height", height, max.height, limits.maxHeight]] as const) {
      if (v !== null && v > m && (!configuredOnly || configured !== null)) {
        throw exceeded(field, `size ${size} (${name(field)}) is larger than the limit of ${max.width}x${max.height}${allowed()}`, { limit: m });
      }
    }
  };
  for (const [field, v] of [["width", width], ["height", height]] as const) {
    if (v !== null && (!Number.isInteger(v) || v < 1)) throw invalid(field, "invalid_size", `${name(field)} must be a positive integer, got ${v}`);
  }
  // The operator's explicit maximum first: it holds whatever the model.
  overMax(true);
  if (!model || width === null || height === null) return overMax(false);
  for (const [field, v] of [["width", width], ["height", height]] as const) {
    if (v % model.sizeMultiple !== 0) {
      throw invalid(field, "invalid_size", `size ${size} (${name(field)}): width and height must be multiples of ${model.sizeMultiple}${allowed()}`, {
        allowed: allowedSizes(model, limits, max),
      });
    }
  }
  if (width !== model.nativeWidth || height !== model.nativeHeight) {
    const field: LimitField = width !== model.nativeWidth ? "width" : "height";
    if (model.spatial === "fixed") {
      throw exceeded(field, `size ${size} (${name(field)}) is not allowed: this model's export has a fixed size${allowed()}`, { allowed: allowedSizes(model, limits, max) });
    }
    if (!limits.allowNonNativeSizes) {
      throw exceeded(
        field,
        `size ${size} (${name(field)}) is not allowed: the model was trained at ${model.nativeWidth}x${model.nativeHeight} only, and other sizes are off unless allowNonNativeSizes (--allow-non-native-sizes) is set${allowed()}`,
        { allowed: allowedSizes(model, limits, max) },
      );
    }
  }
  overMax(false);
  const rows = rowsOfRequest(r);
  const bytes = estimateRequestBytes(model, width, height, rows);
  if (bytes > limits.maxRequestBytes) {
    const field: LimitField = width >= height ? "width" : "height";
    throw exceeded(
      field,
      `size ${size} (${name(field)}) with ${rows} UNet row(s) needs an estimated ${mib(bytes)} MiB, above the budget of ${mib(limits.maxRequestBytes)} MiB (maxRequestBytes); ask for a smaller size or fewer images`,
      { limit: limits.maxRequestBytes, estimatedBytes: Math.round(bytes) },
    );
  }
  const memory = model.memory;
  if (memory && memory.budgetBytes > 0) {
    const est = estimateWorkerBytes({ ...model, memory }, width, height, rows, imagesOf(r));
    if (est.total > memory.budgetBytes) {
      // Blame the image count when one image would fit, else the size.
      const one = estimateWorkerBytes({ ...model, memory }, width, height, rows / imagesOf(r), 1);
      const field: LimitField = imagesOf(r) > 1 && one.total <= memory.budgetBytes ? "numOutputsPerPrompt" : width >= height ? "width" : "height";
      throw exceeded(
        field,
        `size ${size} with ${rows} UNet row(s) (${name(field)}) needs an estimated ${describeWorkerBytes(est)} in its worker, more than the ${(memory.budgetBytes / 1024 ** 3).toFixed(2)} GiB it may use ` +
          `(its share of this machine's memory); ask for a smaller size or fewer images`,
        { limit: memory.budgetBytes, estimatedBytes: Math.round(est.total) },
      );
    }
  }
  if (memory?.device) checkDeviceBuffers(model, memory.device, width, height, rows, exceeded, name);
}

/**
 * A GPU buffer holds one tensor whole: the largest (self-attention's scores, all rows of the call in one) must fit
 * the adapter's `maxStorageBufferBindingSize` and `maxBufferSize`, or the device cannot run the request at all.
 */
function checkDeviceBuffers(
  model: ModelLimits,
  device: NonNullable<ModelLimits["memory"]>["device"] & object,
  width: number,
  height: number,
  rows: number,
  exceeded: (field: LimitField, message: string, data: Record<string, unknown>) => Error,
  name: (f: LimitField) => string,
): void {
  const ratio = (width * height) / (model.nativeWidth * model.nativeHeight);
  const largest = rows * device.largestBufferBytesPerRow * ratio * ratio;
  const limit = Math.min(device.maxBufferSize, device.maxStorageBufferBindingSize);
  if (largest <= limit) return;
  const field: LimitField = width >= height ? "width" : "height";
  throw exceeded(
    field,
    `size ${width}x${height} with ${rows} UNet row(s) (${name(field)}) needs a GPU buffer of an estimated ${mib(largest)} MiB (self-attention scores), ` +
      `more than the device holds in one buffer: ${mib(limit)} MiB (maxStorageBufferBindingSize ${mib(device.maxStorageBufferBindingSize)} MiB, maxBufferSize ${mib(device.maxBufferSize)} MiB, from ${device.source}); ` +
      `ask for a smaller size or fewer images, or start the model with its attention sliced (--attention-slices N)`,
    { limit, estimatedBytes: Math.round(largest), maxBufferSize: device.maxBufferSize, maxStorageBufferBindingSize: device.maxStorageBufferBindingSize },
  );
}

/**
 * The tighter of two sets of limits (a server's own limits over its engine's): the smaller maximum of each,
 * non-native sizes only when both allow them.
 */
export function tightenLimits(base: RequestLimits, over: Partial<RequestLimits>): RequestLimits {
  const min = (a: number | null, b: number | null | undefined) => (a === null ? (b ?? null) : b === null || b === undefined ? a : Math.min(a, b));
  return {
    maxWidth: min(base.maxWidth, over.maxWidth),
    maxHeight: min(base.maxHeight, over.maxHeight),
    maxSteps: min(base.maxSteps, over.maxSteps)!,
    maxOutputsPerPrompt: min(base.maxOutputsPerPrompt, over.maxOutputsPerPrompt)!,
    maxPromptChars: min(base.maxPromptChars, over.maxPromptChars)!,
    allowNonNativeSizes: base.allowNonNativeSizes && (over.allowNonNativeSizes ?? true),
    maxRequestBytes: min(base.maxRequestBytes, over.maxRequestBytes)!,
  };
}

/** Human description of the sizes a model serves under these limits, for error messages. */
export function allowedSizes(model: ModelLimits, limits: RequestLimits, max = maxSizeFor(limits, model)): string {
  const native = `${model.nativeWidth}x${model.nativeHeight}`;
  if (model.spatial === "fixed" || !limits.allowNonNativeSizes) return `${native} only`;
  return `multiples of ${model.sizeMultiple} up to ${max.width}x${max.height} within the memory budget (native ${native})`;
}

function mib(bytes: number): string {
  return (bytes / 1024 ** 2).toFixed(bytes < 10 * 1024 ** 2 ? 1 : 0);
}
