/**
 * The SSRF guard of webhook URLs: only http(s), and only to public unicast addresses unless the operator
 * allowed private ones. Checked when the prediction is created and again at every attempt, after DNS
 * resolution, and the attempt connects to the address checked here (pinned), so a name that answers a public
 * address first and 127.0.0.1 next (DNS rebinding) cannot reach the inside.
 */
import { lookup as dnsLookup } from "node:dns/promises";
import ipaddr from "ipaddr.js";
import { ValidationError } from "../../../errors/omni-error.js";

/** One resolved address. */
export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

/** Resolves a host name to its addresses (injectable: tests answer loopback for a public-looking name). */
export type WebhookLookup = (hostname: string) => Promise<ResolvedAddress[]>;

/** The system resolver, every address (a refused one among them refuses the name). */
export const systemLookup: WebhookLookup = async (hostname) =>
  (await dnsLookup(hostname, { all: true, verbatim: true })).map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));

/** A URL that passed the guard, with the address to connect to. */
export interface CheckedUrl {
  url: URL;
  target: ResolvedAddress;
}

/** Never a sensible target, even with private addresses allowed. */
const NEVER = new Set(["unspecified", "multicast", "broadcast"]);

/**
 * Why `address` is refused, or null. ipaddr's `process` turns IPv4-mapped IPv6 (::ffff:127.0.0.1) into the
 * IPv4 address it carries; then only `unicast` (no special range at all) passes without `allowPrivate`.
 */
export function refusedRange(address: string, allowPrivate: boolean): string | null {
  if (!ipaddr.isValid(address)) return "not an IP address";
  const range = ipaddr.process(address).range();
  if (NEVER.has(range)) return range;
  if (allowPrivate || range === "unicast") return null;
  return range;
}

/**
 * Parses and checks `raw`; resolves the host (an IP literal as itself) and returns the first address after
 * checking them all. Throws a ValidationError naming `webhook`.
 */
export async function checkWebhookUrl(raw: string, opts: { allowPrivate: boolean; lookup: WebhookLookup }): Promise<CheckedUrl> {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ValidationError(`webhook: not a valid URL`, { field: "webhook" });
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new ValidationError(`webhook: only http and https URLs are accepted, got ${url.protocol}`, { field: "webhook" });
  if (url.username || url.password) throw new ValidationError("webhook: credentials in the URL are not accepted", { field: "webhook" });
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  let addresses: ResolvedAddress[];
  if (ipaddr.isValid(host)) {
    addresses = [{ address: host, family: host.includes(":") ? 6 : 4 }];
  } else {
    try {
      addresses = await opts.lookup(host);
    } catch (err) {
      throw new ValidationError(`webhook: the host ${host} does not resolve`, { field: "webhook", cause: err, data: { reason: "dns" } });
    }
    if (addresses.length === 0) throw new ValidationError(`webhook: the host ${host} does not resolve`, { field: "webhook", data: { reason: "dns" } });
  }
  for (const a of addresses) {
    const why = refusedRange(a.address, opts.allowPrivate);
    if (why !== null) {
      throw new ValidationError(
        `webhook: ${host === a.address ? host : `${host} resolves to ${a.address}`}, a ${why} address; webhooks go to public addresses only` +
          (NEVER.has(why) ? "" : " (the operator can allow private ones with --allow-private-webhooks)"),
        { field: "webhook", data: { reason: "refused_address", range: why } },
      );
    }
  }
  return { url, target: addresses[0]! };
}
