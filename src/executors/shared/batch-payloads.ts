import type { OmniDiffusionRequest } from "../../core/request.js";

/**
 * The wire payload of each batch, encoded once and reused by every attempt at it (retries, failover to
 * another endpoint): an init image costs one PNG encode per batch, not one per attempt. Keyed by the batch
 * array, which the remote executor hands unchanged to each attempt of one call.
 */
export class BatchPayloads<T> {
  readonly #byBatch = new WeakMap<readonly OmniDiffusionRequest[], T>();
  readonly #encode: (batch: readonly OmniDiffusionRequest[]) => T;

  constructor(encode: (batch: readonly OmniDiffusionRequest[]) => T) {
    this.#encode = encode;
  }

  /** The batch's payload: the one already made for it, else encoded now. */
  of(batch: readonly OmniDiffusionRequest[]): T {
    let payload = this.#byBatch.get(batch);
    if (payload === undefined) {
      payload = this.#encode(batch);
      this.#byBatch.set(batch, payload);
    }
    return payload;
  }

  /** Records a payload made while planning the batch (SageMaker sizes each request's dict before batching). */
  set(batch: readonly OmniDiffusionRequest[], payload: T): void {
    this.#byBatch.set(batch, payload);
  }
}
