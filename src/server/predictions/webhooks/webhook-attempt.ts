/**
 * One delivery attempt: a POST of the JSON body with the signed headers to the address the guard checked
 * (pinned: the socket connects there whatever DNS answers now), within a deadline. Redirects are not
 * followed (node:http never does): a 3xx is a failed attempt like any non-2xx.
 */
import http from "node:http";
import https from "node:https";
import type { LookupFunction } from "node:net";
import type { Clock } from "../../../utils/clock.js";
import type { ResolvedAddress } from "./webhook-url-guard.js";

/** How an attempt ended. */
export interface AttemptResult {
  ok: boolean;
  statusCode: number | null;
  error: string | null;
}

export interface AttemptRequest {
  url: URL;
  target: ResolvedAddress;
  headers: Record<string, string>;
  body: string;
  timeoutMs: number;
  clock: Clock;
  signal: AbortSignal;
}

/** Answers every lookup of the request's host with the pinned address (node asks with `all` when it races families). */
function pinned(target: ResolvedAddress): LookupFunction {
  return (_host, options, cb) => {
    if ((options as { all?: boolean }).all) (cb as unknown as (e: null, a: ResolvedAddress[]) => void)(null, [target]);
    else cb(null, target.address, target.family);
  };
}

/** Sends once; never rejects (a failure is an AttemptResult). */
export function sendAttempt(req: AttemptRequest): Promise<AttemptResult> {
  return new Promise((resolve) => {
    let settled = false;
    const finish = (r: AttemptResult) => {
      if (settled) return;
      settled = true;
      timer.clear();
      req.signal.removeEventListener("abort", onAbort);
      resolve(r);
    };
    const transport = req.url.protocol === "https:" ? https : http;
    const payload = Buffer.from(req.body);
    const outgoing = transport.request(req.url, {
      method: "POST",
      agent: false, // a fresh socket per attempt: a pooled one could have been opened to another address
      lookup: pinned(req.target),
      headers: { ...req.headers, "content-type": "application/json", "content-length": String(payload.length), "user-agent": "omni-diffusion-webhooks" },
    });
    const timer = req.clock.timer(() => {
      outgoing.destroy();
      finish({ ok: false, statusCode: null, error: `timed out after ${req.timeoutMs} ms` });
    }, req.timeoutMs);
    const onAbort = () => {
      outgoing.destroy();
      finish({ ok: false, statusCode: null, error: "aborted" });
    };
    req.signal.addEventListener("abort", onAbort, { once: true });
    outgoing.on("response", (res) => {
      const code = res.statusCode ?? 0;
      const ok = code >= 200 && code < 300;
      finish({ ok, statusCode: code, error: ok ? null : code >= 300 && code < 400 ? `HTTP ${code} (redirects are not followed)` : `HTTP ${code}` });
      // The status is all we need: a receiver's body (however long it streams) is not read, and the socket is ours alone.
      res.on("error", () => {});
      res.destroy();
    });
    outgoing.on("error", (err: NodeJS.ErrnoException) => finish({ ok: false, statusCode: null, error: err.code ?? err.message }));
    if (req.signal.aborted) onAbort();
    else outgoing.end(payload);
  });
}
