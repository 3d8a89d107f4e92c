import { parseModelLimits, type ModelLimits } from "../core/model-limits.js";
import { UnknownMethodError, toOmniError } from "../errors/omni-error.js";
import type { DiffusionExecutor } from "../executors/base.js";

/** Longest wait for the `describeModel` reply at start-up, ms (a remote peer that never answers must not stall create()). */
const DESCRIBE_TIMEOUT_MS = 30_000;

/**
 * Asks rank 0 what its model can serve (the worker's `describeModel` RPC), once, after the executor started.
 * Executors that cannot answer (no such RPC, e.g. the OpenAI executor) give null: then only the config's
 * limits apply, and the workers still refuse what their model cannot run. Other failures warn and give null.
 */
export async function fetchModelLimits(executor: DiffusionExecutor, rpcTimeoutMs: number): Promise<ModelLimits | null> {
  try {
    const reply = await executor.collectiveRpc("describeModel", { uniqueReplyRank: 0, timeout: Math.min(rpcTimeoutMs, DESCRIBE_TIMEOUT_MS) });
    return parseModelLimits(reply);
  } catch (err) {
    const e = toOmniError(err);
    if (!(e instanceof UnknownMethodError) && e.code !== "OMNI_ERR_UNKNOWN_METHOD") {
      process.emitWarning(`omni-diffusion: the executor did not describe its model (${e.message}); only the config limits apply`);
    }
    return null;
  }
}
