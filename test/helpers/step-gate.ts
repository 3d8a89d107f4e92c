import { fileURLToPath } from "node:url";
import type { GateStatus } from "../fixtures/workers/step-gate.js";

/** `workerExtension` spec of the step gate (test/fixtures/workers/step-gate.ts). */
export const STEP_GATE = `${fileURLToPath(new URL("../fixtures/workers/step-gate.ts", import.meta.url))}#StepGate`;

/** An engine or executor: anything that passes an RPC to every rank. */
interface RpcTarget {
  collectiveRpc(method: string, opts?: { args?: unknown[] }): Promise<unknown>;
}

/** The parent's side of the step gate, on every rank of `target` (whose workers load {@link STEP_GATE} or an extension that includes it). */
export interface StepGateControl {
  /** States of `requestId` (any request when absent) wait once they have done `step` steps; their progress event for `step` says they are there. */
  hold(step: number, requestId?: string): Promise<void>;
  /** Drops the hold of `requestId` (every hold when absent). */
  release(requestId?: string): Promise<void>;
  /** Each rank's holds and the requests waiting at them. */
  status(): Promise<GateStatus[]>;
}

/**
 * Drives the step gate of `target`'s workers.
 *
 * @example
 * ```ts
 * const engine = await DiffusionEngine.create({ numGpus: 1, workerExtension: STEP_GATE });
 * const gate = stepGate(engine);
 * await gate.hold(3, request.requestId);
 * // ... the request's progress reaches step 3 and stays there ...
 * await gate.release();
 * ```
 */
export function stepGate(target: RpcTarget): StepGateControl {
  return {
    hold: async (step, requestId) => void (await target.collectiveRpc("gateHold", { args: [step, requestId ?? null] })),
    release: async (requestId) => void (await target.collectiveRpc("gateRelease", { args: requestId === undefined ? [] : [requestId] })),
    status: async () => (await target.collectiveRpc("gateStatus")) as GateStatus[],
  };
}
