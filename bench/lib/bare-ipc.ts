import { fork, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";

const CHILD = fileURLToPath(new URL("./bare-ipc-child.mjs", import.meta.url));

/**
 * The floor under `collectiveRpc("ping")`: `n` bare Node children (bare-ipc-child.mjs) pinged the way the
 * executor pings its workers (one message to each over `child_process` IPC, JSON, and wait for every reply).
 * bench/rpc.ts times it beside the executor so the gap is what our RPC path adds.
 */
export class BareIpc {
  readonly #kids: ChildProcess[];
  readonly #pending = new Map<number, { left: number; resolve: () => void }>();
  #id = 0;

  constructor(n: number) {
    this.#kids = Array.from({ length: n }, () => fork(CHILD, [], { execArgv: [], stdio: ["ignore", "inherit", "inherit", "ipc"] }));
    for (const kid of this.#kids) {
      kid.on("message", (m: { id: number }) => {
        const p = this.#pending.get(m.id);
        if (p && --p.left === 0) {
          this.#pending.delete(m.id);
          p.resolve();
        }
      });
    }
  }

  get pids(): (number | undefined)[] {
    return this.#kids.map((k) => k.pid);
  }

  /** One message to every child; resolves when all have answered. */
  ping(): Promise<void> {
    const id = ++this.#id;
    return new Promise<void>((resolve) => {
      this.#pending.set(id, { left: this.#kids.length, resolve });
      for (const kid of this.#kids) kid.send({ type: "call", id, method: "ping", deadline: Date.now() + 60_000 });
    });
  }

  close(): void {
    for (const kid of this.#kids) kid.kill();
  }
}
