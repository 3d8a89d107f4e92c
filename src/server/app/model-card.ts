import type { DiffusionEngine } from "../../engine/engine.js";
import { modelDisplayName } from "../../core/model-path.js";
import type { RequestLimits } from "../../core/limits.js";
import type { ModelLimits } from "../../core/model-limits.js";
import { UnknownMethodError, toOmniError } from "../../errors/omni-error.js";
import type { PipelineInfo } from "../../core/pipeline-info.js";
import type { WorkerStats } from "../../protocol/worker-stats.js";
import { ServedModels } from "./served-models.js";

/** What the server knows about the model it serves (`GET /v1/models`, request checks, defaults). */
export interface ModelCard {
  /** The id clients pass as `model`. */
  id: string;
  /** Unix seconds the server started serving it. */
  created: number;
  /**
   * Size, size multiple and defaults, read from rank 0 through the `getStats` RPC. Null when the executor
   * does not answer it (some remote executors): requests are then checked by the workers alone.
   */
  info: Omit<PipelineInfo, "components" | "asleep"> | null;
  /** The engine's per-request limits and what its model can serve (null: the executor cannot say). */
  requestLimits: RequestLimits;
  limits: ModelLimits | null;
  /** Every model the server serves and its current default (issue 24): what the dialects resolve `model` with. */
  models: ServedModels;
}

/**
 * Builds the card: `getStats` on rank 0 within `timeoutMs`. A failure is not fatal (the card has no `info`);
 * `warn` receives the reason, except for an executor that does not implement the method (silent).
 */
export async function loadModelCard(engine: DiffusionEngine, servedName: string | undefined, timeoutMs: number, warn: (msg: string) => void): Promise<ModelCard> {
  let info: ModelCard["info"] = null;
  try {
    const stats = (await engine.collectiveRpc("getStats", { uniqueReplyRank: 0, timeout: timeoutMs })) as WorkerStats | null;
    if (stats?.model && typeof stats.model.width === "number") info = stats.model;
  } catch (err) {
    const e = toOmniError(err);
    // An executor that does not implement getStats (docs/custom-executors.md lets it) has nothing to report.
    if (!(e instanceof UnknownMethodError) && e.code !== "OMNI_ERR_UNKNOWN_METHOD") {
      warn(`the executor did not report the model (getStats: ${e.message}); requests are checked by the workers only`);
    }
  }
  const id = servedName ?? modelDisplayName(engine.config.model);
  return {
    id,
    models: new ServedModels(engine, id),
    created: Math.floor(Date.now() / 1000),
    info,
    requestLimits: engine.requestLimits,
    limits: engine.modelLimits,
  };
}
