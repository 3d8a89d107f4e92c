/**
 * A worker server's collective RPC over its own HTTP route (`POST /v1/diffusion/rpc`), shaped like an
 * engine's `collectiveRpc`, so helpers that drive worker extensions (the step gate) work against a server.
 */

/** What `stepGate` (test/helpers/step-gate.ts) and similar helpers need: an RPC to every rank. */
export interface HttpRpcTarget {
  collectiveRpc(method: string, opts?: { args?: unknown[] }): Promise<unknown>;
}

/**
 * RPCs to the worker server at `httpUrl` (with `headers`, e.g. its API key). A non-200 answer throws with
 * the server's typed error, so a test that drives a missing extension fails naming it.
 *
 * @example
 * ```ts
 * const gate = stepGate(workerRpc(server.httpUrl!));
 * await gate.hold(0, request.requestId);
 * ```
 */
export function workerRpc(httpUrl: string, headers: Record<string, string> = {}): HttpRpcTarget {
  return {
    async collectiveRpc(method, opts = {}) {
      const res = await fetch(`${httpUrl}/v1/diffusion/rpc`, {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: JSON.stringify({ method, args: opts.args ?? [] }),
      });
      const body = (await res.json()) as { result?: unknown; error?: { code: string; message: string } };
      if (res.status !== 200) throw new Error(`rpc ${method} answered ${res.status}: ${body.error?.code} ${body.error?.message}`);
      return body.result;
    },
  };
}
