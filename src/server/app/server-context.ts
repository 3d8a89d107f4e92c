import type { DiffusionEngine } from "../../engine/engine.js";
import type { OmniError } from "../../errors/omni-error.js";
import type { ServerMetrics } from "../../metrics/server-metrics.js";
import type { ImageStore } from "./image-store.js";
import type { ModelCard } from "./model-card.js";
import type { ServerConfig } from "./server-options.js";

/** What the route plugins share with the server that registers them. */
export interface ServerContext {
  readonly engine: DiffusionEngine;
  readonly config: ServerConfig;
  readonly model: ModelCard;
  readonly metrics: ServerMetrics;
  readonly store: ImageStore;
  /** Why new generation requests are refused right now (shutting down, executor failed), or null. */
  refusal(): OmniError | null;
  /**
   * Registers one in-flight generation so a shutdown can wait for it, or abort it (with `reason`) once
   * its deadline passed. Returns the unregister function (idempotent).
   */
  track(abort: (reason: OmniError) => void): () => void;
}
