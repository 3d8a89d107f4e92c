/**
 * The `getStats` reply: what a worker reports about itself, read by the servers' model card and the
 * benches. It lives in protocol (beside the IPC it crosses), so readers above never reach into workers/.
 */
import type { BatchingPolicy } from "../core/config.js";
import type { PipelineInfo } from "../core/pipeline-info.js";
import type { CallBudgetStats } from "../pipelines/call-planner.js";
import type { StepLoopStats } from "../pipelines/step-loop.js";

/** Reply of the `getStats` RPC. */
export interface WorkerStats {
  rank: number;
  pid: number;
  model: Omit<PipelineInfo, "components" | "asleep">;
  components: string[];
  requestsDone: number;
  inFlight: number;
  asleep: boolean;
  /**
   * The step loop's admission rule; `request` for a pipeline without the step-level interface (one generate
   * call at a time).
   */
  batching: BatchingPolicy;
  /** Requests being denoised, and requests waiting to join the step loop. */
  active: number;
  waiting: number;
  /** Where the step loop's time went (null for a pipeline without the step-level interface). */
  loop: StepLoopStats | null;
  /** The compute budget of a UNet call and the learned UNet profile per image size (null without a step loop). */
  callBudget: CallBudgetStats | null;
  /** CPU time this process used so far (all its threads, onnxruntime's included), ms: a load-independent cost. */
  cpuMs: number;
  /** Resident memory now and its peak since the process started, bytes (what the OOM killer looks at). */
  rssBytes: number;
  peakRssBytes: number;
  /** The model cache (issue 24): loads and evictions so far, the budget, and each loaded pipeline. Absent from older workers. */
  models?: {
    loads: number;
    evictions: number;
    maxLoaded: number | null;
    budgetBytes: number;
    usedBytes: number;
    loaded: { key: string; model: string; loras: { name: string; scale: number }[]; bytes: number; users: number; loading: boolean }[];
  };
}
