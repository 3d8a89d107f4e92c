import { isIP } from "node:net";
import { PermissionError } from "../../errors/omni-error.js";

/** The request headers the guards read (Node's lower-cased `req.headers`). */
export interface SiteHeaders {
  host?: string | undefined;
  origin?: string | undefined;
  "sec-fetch-site"?: string | string[] | undefined;
}

/** Methods that change nothing: the browser's same-origin policy already keeps their answers from other sites. */
const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

/** Binding to every interface names no host a client would send. */
const WILDCARD_HOSTS = new Set(["0.0.0.0", "::", "[::]"]);

const one = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v);

/** `host[:port]` (or `[v6]:port`) → the lower-cased host name, without the port and a trailing dot. */
export function hostName(hostHeader: string): string {
  const h = hostHeader.trim().toLowerCase();
  const name = h.startsWith("[") ? h.slice(0, h.indexOf("]") + 1) : h.split(":")[0]!;
  return name.endsWith(".") ? name.slice(0, -1) : name;
}

/** An origin's `host[:port]` as a browser writes it in `Origin`, or null for `null` and anything unparsable. */
function originHost(origin: string): string | null {
  try {
    const u = new URL(origin);
    return u.protocol === "http:" || u.protocol === "https:" ? u.host.toLowerCase() : null;
  } catch {
    return null;
  }
}

/**
 * Which origins may POST across sites (`serve --cors-origin`): exact origins (`https://app.example.com`,
 * scheme, host and port as the browser sends them) or `*` for any.
 */
export class OriginAllowList {
  readonly #origins: ReadonlySet<string>;
  readonly any: boolean;

  constructor(origins: readonly string[]) {
    this.any = origins.includes("*");
    this.#origins = new Set(origins.filter((o) => o !== "*").map((o) => o.replace(/\/+$/, "").toLowerCase()));
  }

  /** True when `origin` (an `Origin` header value) is allowed. */
  allows(origin: string | undefined): boolean {
    if (origin === undefined) return false;
    return this.any || this.#origins.has(origin.toLowerCase());
  }

  get size(): number {
    return this.#origins.size + (this.any ? 1 : 0);
  }
}

/**
 * The 403 for a request another site's page made, or null. A browser marks where a request comes from
 * (`Sec-Fetch-Site`, which page scripts cannot set, and `Origin`); a multipart or text POST from another
 * origin is a CORS "simple request" that runs without a preflight, so it must be refused here, before the
 * route runs. Requests carrying neither header come from programs (curl, SDKs) and pass; so do safe methods,
 * same-origin requests and origins in `allowed`. A page on another port of the same host is a different
 * origin (`Sec-Fetch-Site: same-site`), refused too.
 */
export function crossSiteRefusal(method: string, headers: SiteHeaders, allowed: OriginAllowList): PermissionError | null {
  if (SAFE_METHODS.has(method.toUpperCase())) return null;
  const origin = one(headers.origin);
  if (allowed.allows(origin)) return null;
  const site = one(headers["sec-fetch-site"])?.trim().toLowerCase();
  if (site !== undefined) {
    if (site === "same-origin" || site === "none") return null;
  } else {
    if (origin === undefined) return null;
    const host = one(headers.host);
    if (host !== undefined && originHost(origin) === host.trim().toLowerCase()) return null;
  }
  const from = origin ?? "unknown origin";
  return new PermissionError(
    `cross-site request refused: this server takes ${method.toUpperCase()} requests only from its own pages and from programs, ` +
      `not from a page on ${from}${site ? ` (Sec-Fetch-Site: ${site})` : ""}; to allow that origin start serve with --cors-origin ${origin && originHost(origin) ? origin : "<origin>"}`,
    { data: { field: "origin", openaiCode: "cross_site_request" } },
  );
}

/**
 * Which `Host` names a keyless server answers (DNS rebinding: a page on `evil.example` whose name now
 * resolves to 127.0.0.1 is same-origin with this server by the browser's rules, so only the `Host` header
 * tells it apart). Accepted: IP addresses (a rebinding page always has a name), `localhost` and
 * `*.localhost`, the name the server was bound to, and `extra` names (`--allowed-host`: a name, `.example.com`
 * for it and its subdomains, or `*` for any).
 */
export class HostAllowList {
  readonly #exact = new Set<string>(["localhost"]);
  readonly #suffixes: string[] = [".localhost"];
  readonly #any: boolean;

  constructor(extra: readonly string[], boundHost?: string) {
    this.#any = extra.includes("*");
    for (const raw of [...extra, ...(boundHost && !WILDCARD_HOSTS.has(boundHost) ? [boundHost] : [])]) {
      const name = raw.trim().toLowerCase().replace(/\.$/, "");
      if (name === "*" || name === "") continue;
      if (name.startsWith(".")) {
        this.#suffixes.push(name);
        this.#exact.add(name.slice(1));
      } else this.#exact.add(isIP(name) === 6 ? `[${name}]` : name);
    }
  }

  /** True when a request with this `Host` header may be answered. */
  allows(hostHeader: string | undefined): boolean {
    if (this.#any || hostHeader === undefined) return true;
    const name = hostName(hostHeader);
    if (isIP(name) === 4 || (name.startsWith("[") && isIP(name.slice(1, -1)) === 6)) return true;
    return this.#exact.has(name) || this.#suffixes.some((s) => name.endsWith(s));
  }
}

/** The 403 for a `Host` the keyless server does not answer, or null. */
export function hostRefusal(headers: SiteHeaders, allowed: HostAllowList): PermissionError | null {
  const host = one(headers.host);
  if (allowed.allows(host)) return null;
  const name = hostName(host!);
  return new PermissionError(
    `host '${name}' refused: a server without an API key answers only loopback names, IP addresses and the names given with --allowed-host ` +
      `(a web page whose domain was pointed at this machine must not reach it); start serve with --allowed-host ${name}, or set --api-key`,
    { data: { field: "host", openaiCode: "host_not_allowed" } },
  );
}
