import { serializeError } from "../../errors/omni-error.js";
import type { RpcMessage, RpcReply } from "../../protocol/queue-protocol.js";

/** How many calls a worker remembers the reply of (a resend comes within its caller's deadline). */
const REMEMBERED_CALLS = 1_024;

/**
 * A queue worker's answers to `collectiveRpc` calls, by call id. Pub/sub delivers at most once, so a caller
 * missing a reply sends the call again under the same id (executors/queue/rpc-broadcast.ts): the method ran
 * once, and the worker answers the resend with the reply it already gave (or will give, while it runs).
 */
export class RpcAnswers {
  readonly #worker: string;
  readonly #run: (msg: RpcMessage) => Promise<unknown>;
  readonly #limit: number;
  /** Oldest first (a Map keeps insertion order), so the first key is the one to forget. */
  readonly #answers = new Map<string, Promise<RpcReply>>();

  constructor(worker: string, run: (msg: RpcMessage) => Promise<unknown>, opts: { remember?: number } = {}) {
    this.#worker = worker;
    this.#run = run;
    this.#limit = opts.remember ?? REMEMBERED_CALLS;
  }

  /** The reply to `msg`, or null when the message is a resend meant for other workers. Never rejects. */
  answer(msg: RpcMessage): Promise<RpcReply> | null {
    if (msg.only && !msg.only.includes(this.#worker)) return null;
    const known = this.#answers.get(msg.id);
    if (known) return known;
    const reply = this.#reply(msg);
    this.#answers.set(msg.id, reply);
    if (this.#answers.size > this.#limit) this.#answers.delete(this.#answers.keys().next().value!);
    return reply;
  }

  async #reply(msg: RpcMessage): Promise<RpcReply> {
    const reply: RpcReply = { id: msg.id, worker: this.#worker };
    try {
      const replies = await this.#run(msg);
      reply.replies = Array.isArray(replies) ? replies : [replies];
    } catch (err) {
      reply.error = serializeError(err);
    }
    return reply;
  }
}
