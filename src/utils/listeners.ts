/**
 * A set of event listeners (retry events, worker events) where one throwing listener is reported as a
 * process warning and never stops the others or the code that emits.
 */
export class Listeners<E> {
  readonly #set = new Set<(e: E) => void>();
  readonly #what: string;

  /** `what` names the events in the warning a throwing listener causes. */
  constructor(what: string) {
    this.#what = what;
  }

  /** Adds `listener`; `dispose()` removes it. */
  add(listener: (e: E) => void): { dispose(): void } {
    this.#set.add(listener);
    return { dispose: () => void this.#set.delete(listener) };
  }

  /** Whether any listener is registered (an emitter may skip building events nobody reads). */
  get any(): boolean {
    return this.#set.size > 0;
  }

  emit(e: E): void {
    for (const l of this.#set) {
      try {
        l(e);
      } catch (err) {
        process.emitWarning(`omni-diffusion: a ${this.#what} listener threw: ${(err as Error)?.message ?? String(err)}`);
      }
    }
  }
}
