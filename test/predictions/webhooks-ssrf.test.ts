/**
 * The SSRF guard: without --allow-private-webhooks, URLs to loopback, private, link-local (cloud metadata),
 * unspecified, multicast and IPv4-mapped forms of those are refused with a ValidationError naming `webhook`,
 * also when a host name resolves there (a lookup injected here); at attempt time the name is resolved and
 * checked again (rebinding is refused, nothing is sent), and the socket connects to the address checked.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import Database from "better-sqlite3";
import { SqliteWebhookDispatcher } from "../../src/server/predictions/webhooks/sqlite-webhook-dispatcher.js";
import type { ResolvedAddress } from "../../src/server/predictions/webhooks/webhook-url-guard.js";
import { attemptOf, LogLatch, Receiver } from "./webhooks-receiver.js";

const PUBLIC = "93.184.215.14";

/** Rejects unless `promise` fails with a ValidationError naming `webhook` whose message matches `why`. */
async function refused(promise: Promise<void>, why: RegExp, url: string): Promise<void> {
  await assert.rejects(promise, (e: Error & { code?: string; data?: { field?: string } }) => {
    assert.equal(e.code, "OMNI_ERR_VALIDATION", url);
    assert.equal(e.data?.field, "webhook", url);
    assert.match(e.message, why, url);
    return true;
  });
}

describe("webhooks: SSRF guard", { timeout: 60_000 }, () => {
  it("refuses internal addresses and other schemes without the flag; public ones pass", async () => {
    const names: Record<string, ResolvedAddress[]> = {
      "hooks.example": [{ address: "127.0.0.1", family: 4 }],
      "mixed.example": [{ address: PUBLIC, family: 4 }, { address: "10.1.2.3", family: 4 }],
      "public.example": [{ address: PUBLIC, family: 4 }],
    };
    const lookup = async (host: string) => names[host] ?? [];
    const d = new SqliteWebhookDispatcher({ db: new Database(":memory:"), lookup });
    try {
      const cases: [string, RegExp][] = [
        ["http://127.0.0.1:8080/hook", /loopback/],
        ["http://nowhere.example/", /nowhere\.example does not resolve/],
        ["http://[::1]/", /loopback/],
        ["http://169.254.169.254/latest/meta-data/", /linkLocal/],
        ["http://[::ffff:127.0.0.1]/", /loopback/],
        ["http://[::ffff:169.254.169.254]/", /linkLocal/],
        ["http://10.0.0.1/", /private/],
        ["http://172.16.5.4/", /private/],
        ["http://192.168.1.1/", /private/],
        ["http://[fc00::1]/", /uniqueLocal/],
        ["http://[fe80::1]/", /linkLocal/],
        ["http://0.0.0.0/", /unspecified/],
        ["http://224.0.0.1/", /multicast/],
        ["http://hooks.example/", /hooks\.example resolves to 127\.0\.0\.1, a loopback address.*--allow-private-webhooks/],
        ["http://mixed.example/", /10\.1\.2\.3, a private address/],
        ["ftp://example.com/", /only http and https/],
        ["javascript:alert(1)", /only http and https/],
        ["not a url", /not a valid URL/],
        ["http://user:pw@public.example/", /credentials/],
      ];
      for (const [url, why] of cases) await refused(d.checkUrl(url), why, url);
      await d.checkUrl(`http://${PUBLIC}/hook`);
      await d.checkUrl("https://public.example/hook?x=1");
    } finally {
      await d.close();
    }
    const system = new SqliteWebhookDispatcher({ db: new Database(":memory:") }); // the system resolver: localhost is loopback
    await refused(system.checkUrl("http://localhost:8000/hook"), /localhost resolves to (127\.0\.0\.1|::1), a loopback address/, "localhost");
    await system.close();
  });

  it("--allow-private-webhooks lets loopback and private through, never unspecified or multicast", async () => {
    const d = new SqliteWebhookDispatcher({ db: new Database(":memory:"), allowPrivate: true, lookup: async () => [] });
    try {
      for (const url of ["http://127.0.0.1:1/", "http://10.0.0.1/", "http://[::ffff:127.0.0.1]/", "http://169.254.169.254/"]) await d.checkUrl(url);
      await refused(d.checkUrl("http://0.0.0.0/"), /unspecified/, "0.0.0.0");
      await refused(d.checkUrl("http://[ff02::1]/"), /multicast/, "ff02::1");
    } finally {
      await d.close();
    }
  });

  it("checked again at each attempt: a name that rebinds to loopback is refused there and nothing is sent", async () => {
    const receiver = await Receiver.start();
    const port = new URL(receiver.url).port;
    let calls = 0;
    const lookup = async (): Promise<ResolvedAddress[]> => (calls++ === 0 ? [{ address: PUBLIC, family: 4 }] : [{ address: "127.0.0.1", family: 4 }]);
    const logs = new LogLatch();
    const d = new SqliteWebhookDispatcher({ db: new Database(":memory:"), lookup, logger: logs.logger });
    try {
      const url = `http://rebind.example:${port}/hook`;
      await d.checkUrl(url); // public at creation
      d.notify("p1", "completed", { id: "p1" }, { url, eventsFilter: null });
      const line = await logs.line(attemptOf("p1", 1));
      assert.equal(line.msg, "webhook refused; not retried");
      const [s] = d.deliveries("p1");
      assert.deepEqual([s!.status, s!.attempts, s!.lastStatusCode, s!.nextAttemptAt], ["failed", 1, null, null]);
      assert.match(s!.lastError!, /resolves to 127\.0\.0\.1, a loopback address/);
      assert.equal(receiver.received.length, 0);
    } finally {
      await d.close();
      await receiver.close();
    }
  });

  it("the attempt connects to the address the guard resolved, with the URL's host name in Host", async () => {
    const receiver = await Receiver.start();
    const port = new URL(receiver.url).port;
    const asked: string[] = [];
    const lookup = async (host: string): Promise<ResolvedAddress[]> => (asked.push(host), [{ address: "127.0.0.1", family: 4 }]);
    const logs = new LogLatch();
    const d = new SqliteWebhookDispatcher({ db: new Database(":memory:"), allowPrivate: true, lookup, logger: logs.logger });
    try {
      d.notify("p1", "completed", { id: "p1" }, { url: `http://hooks.invalid:${port}/hook`, eventsFilter: null });
      assert.equal((await logs.line(attemptOf("p1", 1))).msg, "webhook delivered");
      assert.equal(receiver.received[0]!.headers.host, `hooks.invalid:${port}`);
      assert.deepEqual(asked, ["hooks.invalid"], "resolved once, by the guard; the socket used that answer");
    } finally {
      await d.close();
      await receiver.close();
    }
  });
});
