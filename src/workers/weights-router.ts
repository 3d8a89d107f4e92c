import { DiffusionOutput } from "../core/output.js";
import type { OmniDiffusionRequest } from "../core/request.js";
import { TimeoutError, toOmniError, type OmniError } from "../errors/omni-error.js";
import { Deadline } from "../policies/deadline.js";
import type { GenerateContext, GenerateIntake } from "./generate-intake.js";
import type { ModelCache } from "./model-cache.js";

/**
 * Runs one generate call's requests, each in the step loop of its weights key (model, LoRA set; core/weights.ts):
 * one loop per loaded key, so a UNet call only ever batches requests of the same weights, and every loop's
 * iterations take turns on the worker's one lane (first come, first served), so no key starves another. A group
 * whose model is loaded runs at once; one whose model is loading waits for it within the call's deadline. A request
 * whose model is unknown, or whose load fails, gets that error; the others still run.
 */
export async function routeByWeights(cache: ModelCache<GenerateIntake>, requests: readonly OmniDiffusionRequest[], ctx: GenerateContext, errors: Record<string, OmniError>): Promise<DiffusionOutput> {
  const groups = new Map<string, OmniDiffusionRequest[]>();
  for (const r of requests) {
    try {
      const key = cache.keyOf(r.model, r.loras);
      const g = groups.get(key);
      if (g) g.push(r);
      else groups.set(key, [r]);
    } catch (err) {
      errors[r.requestId] = toOmniError(err);
    }
  }
  // The common case: one key already loaded, no wait to bound.
  if (groups.size === 1) {
    const [key, group] = [...groups][0]!;
    const hit = cache.peek(key);
    if (hit?.slot) {
      hit.users++;
      try {
        return await hit.slot.run(group, ctx, errors);
      } finally {
        cache.release(hit);
      }
    }
  }
  if (!groups.size) return new DiffusionOutput({ errors });
  const outs = await Promise.all([...groups.values()].map((group) => runGroup(cache, group, ctx)));
  return DiffusionOutput.merge([...outs, new DiffusionOutput({ errors })]);
}

async function runGroup(cache: ModelCache<GenerateIntake>, group: OmniDiffusionRequest[], ctx: GenerateContext): Promise<DiffusionOutput> {
  const first = group[0]!;
  const dl = ctx.deadline === undefined ? null : new Deadline(ctx.deadline - Date.now(), ctx.signal, () => new TimeoutError(`model "${first.model ?? "default"}" was still loading at the call's deadline`, { data: { model: first.model } }));
  let lease;
  try {
    lease = await cache.acquire(first.model, first.loras, dl ? dl.signal : ctx.signal);
  } catch (err) {
    const e = toOmniError(err);
    return new DiffusionOutput({ errors: Object.fromEntries(group.map((r) => [r.requestId, e])) });
  } finally {
    dl?.dispose();
  }
  try {
    return await lease.slot.run(group, ctx, {});
  } finally {
    cache.release(lease);
  }
}
