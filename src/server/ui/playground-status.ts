import { maxSizeFor, tightenLimits } from "../../core/limits.js";
import type { EndpointState } from "../../executors/base.js";
import type { ServerContext } from "../app/server-context.js";
import type { Throughput } from "./busy-time.js";

/** What the playground's status panel and its form need to know about the server (`GET /ui/api/status`). */
export interface PlaygroundStatus {
  model: {
    id: string;
    /** Sizes the page offers, `WxH`, native first; empty when the server cannot say (then "auto" only). */
    sizes: string[];
    nativeSize: string | null;
    /** Samplers the model accepts (empty: unknown; the server still checks). */
    samplers: string[];
    defaults: { steps: number; guidance: number; sampler: string } | null;
  };
  limits: { maxN: number; maxSteps: number; maxPromptChars: number };
  executor: { name: string; remote: boolean; batching: string };
  endpoints: EndpointState[];
  queue: { depth: number; running: number };
  /** Images made and time spent making them, since the server started (the page's "Images/s"). */
  throughput: Throughput;
  /** Why generation requests are refused now (shutting down, executor failed), or null. */
  refusal: string | null;
}

/** Side multipliers of the native size the page offers when the model runs other sizes. */
const SIZE_FACTORS = [0.5, 1, 1.5, 2, 3, 4];

/** The sizes to offer: the native one, plus multiples of it up to the limit when non-native sizes are allowed. */
function offeredSizes(ctx: ServerContext): string[] {
  const m = ctx.model.limits;
  if (!m) return ctx.model.info ? [`${ctx.model.info.width}x${ctx.model.info.height}`] : [];
  const l = ctx.config.limits;
  const limits = tightenLimits(ctx.model.requestLimits, { maxWidth: l.maxWidth, maxHeight: l.maxHeight });
  const native = `${m.nativeWidth}x${m.nativeHeight}`;
  if (!limits.allowNonNativeSizes || m.spatial === "fixed") return [native];
  const max = maxSizeFor(limits, m);
  const round = (v: number) => Math.max(m.sizeMultiple, Math.round(v / m.sizeMultiple) * m.sizeMultiple);
  const sizes = SIZE_FACTORS.map((f) => [round(m.nativeWidth * f), round(m.nativeHeight * f)] as const)
    .filter(([w, h]) => w >= 8 && h >= 8 && w <= max.width && h <= max.height)
    .map(([w, h]) => `${w}x${h}`);
  return [native, ...new Set(sizes.filter((s) => s !== native))];
}

/** Builds the status answer from what the server already holds; no RPC, so polling it is cheap. */
export function playgroundStatus(ctx: ServerContext, throughput: Throughput): PlaygroundStatus {
  const { engine, model, config } = ctx;
  const info = model.info;
  const executorClass = engine.executor.constructor as { name: string; isRemote?: boolean };
  const stats = engine.stats;
  return {
    model: {
      id: model.id,
      sizes: offeredSizes(ctx),
      nativeSize: model.limits ? `${model.limits.nativeWidth}x${model.limits.nativeHeight}` : info ? `${info.width}x${info.height}` : null,
      samplers: [...(model.limits?.schedulers ?? [])],
      defaults: info ? { steps: info.defaults.numInferenceSteps, guidance: info.defaults.guidanceScale, sampler: info.defaults.scheduler } : null,
    },
    limits: {
      maxN: Math.min(config.limits.maxN, model.requestLimits.maxOutputsPerPrompt),
      maxSteps: Math.min(config.limits.maxSteps, model.requestLimits.maxSteps),
      maxPromptChars: Math.min(config.limits.maxPromptChars, model.requestLimits.maxPromptChars),
    },
    executor: { name: executorClass.name, remote: executorClass.isRemote === true, batching: engine.batching },
    endpoints: engine.executor.endpointStates(),
    queue: { depth: stats.queued, running: stats.inFlight },
    throughput,
    refusal: ctx.refusal()?.message ?? null,
  };
}
