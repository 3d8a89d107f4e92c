/**
 * Signatures and the secret: what a real receiver gets verifies with the `standardwebhooks` package and with
 * the official `replicate` client's `validateWebhook`; the secret is kept in the database across restarts,
 * a bad `--webhook-secret` is a one-line ConfigError, and `GET /v1/webhooks/default/secret` answers the
 * replicate client behind the API key.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import Database from "better-sqlite3";
import Replicate, { validateWebhook } from "replicate";
import { Webhook } from "standardwebhooks";
import { ServerApp } from "../../src/server/app/server-app.js";
import type { ServerOptions } from "../../src/server/app/server-options.js";
import type { ServerPlugin } from "../../src/server/app/server-plugin.js";
import { SqliteWebhookDispatcher } from "../../src/server/predictions/webhooks/sqlite-webhook-dispatcher.js";
import { webhookOptionsFromFlags } from "../../src/server/predictions/webhooks/webhook-flags.js";
import { webhookSecretRoute } from "../../src/server/predictions/webhooks/webhook-secret-route.js";
import { LogLatch, Receiver } from "./webhooks-receiver.js";

const ALL = { eventsFilter: null } as const;

/** The real app shell (API key hook, error handler) serving only the secret route, as the predictions plugin registers it. */
class SecretServer extends ServerApp {
  static create(opts: ServerOptions, dispatcher: SqliteWebhookDispatcher): Promise<SecretServer> {
    const plugin: ServerPlugin["plugin"] = async (app) => void (await app.register(webhookSecretRoute, { dispatcher }));
    return this.open(opts, (parts) => new SecretServer(parts, [{ name: "webhooks", plugin }]));
  }
}
const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

describe("webhooks: signing", { timeout: 120_000 }, () => {
  it("a delivery verifies with standardwebhooks and replicate.validateWebhook; a tampered body does not", async () => {
    const receiver = await Receiver.start();
    const d = new SqliteWebhookDispatcher({ db: new Database(":memory:"), allowPrivate: true });
    try {
      const body = { id: "p1", status: "succeeded", output: ["/v1/files/a.png"], logs: "step 1/4\n" };
      d.notify("p1", "completed", body, { url: `${receiver.url}/hook?token=abc`, ...ALL });
      await receiver.arrived(1);
      const got = receiver.received[0]!;
      assert.equal(got.path, "/hook?token=abc");
      assert.equal(got.headers["content-type"], "application/json");
      const h = { "webhook-id": String(got.headers["webhook-id"]), "webhook-timestamp": String(got.headers["webhook-timestamp"]), "webhook-signature": String(got.headers["webhook-signature"]) };
      assert.match(h["webhook-id"], /^msg_/);
      assert.match(h["webhook-signature"], /^v1,[A-Za-z0-9+/]+=*$/);
      assert.deepEqual(new Webhook(d.secret).verify(got.body, h), body);
      assert.equal(await validateWebhook({ headers: h, body: got.body } as unknown as Request, d.secret), true);
      assert.equal(await validateWebhook({ id: h["webhook-id"], timestamp: h["webhook-timestamp"], signature: h["webhook-signature"], body: got.body, secret: d.secret }), true);
      // Failure cases, so the checks above can fail: another body, another secret.
      assert.throws(() => new Webhook(d.secret).verify(got.body.replace("succeeded", "failed"), h), /signature/i);
      const other = new SqliteWebhookDispatcher({ db: new Database(":memory:") });
      assert.notEqual(other.secret, d.secret);
      assert.equal(await validateWebhook({ headers: h, body: got.body } as unknown as Request, other.secret), false);
      await other.close();
    } finally {
      await d.close();
      await receiver.close();
    }
  });

  it("a --webhook-secret is used as given; a malformed one is a ConfigError naming the flag", async () => {
    const secret = `whsec_${Buffer.alloc(32, 7).toString("base64")}`;
    const opts = webhookOptionsFromFlags({ webhookSecret: secret, allowPrivateWebhooks: true });
    assert.deepEqual(opts, { secret, allowPrivate: true });
    assert.deepEqual(webhookOptionsFromFlags({}), { allowPrivate: false });
    const d = new SqliteWebhookDispatcher({ db: new Database(":memory:"), ...opts });
    assert.equal(d.secret, secret);
    await d.close();
    for (const bad of ["", "secret123", "whsec_", "whsec_not*base64!", `whsec_${Buffer.alloc(8).toString("base64")}`]) {
      assert.throws(
        () => webhookOptionsFromFlags({ webhookSecret: bad }),
        (e: Error & { code?: string; data?: { field?: string } }) => e.code === "OMNI_ERR_CONFIG" && e.data?.field === "--webhook-secret" && !e.message.includes("\n") && e.message.startsWith("--webhook-secret"),
        `refused: ${JSON.stringify(bad)}`,
      );
    }
  });

  it("a generated secret is kept in the database: logged on the first start only, the same after a restart", async () => {
    const dir = mkdtempSync(join(tmpdir(), "omni-hooks-secret-"));
    dirs.push(dir);
    const file = join(dir, "jobs.db");
    const logs1 = new LogLatch();
    const db1 = new Database(file);
    const first = new SqliteWebhookDispatcher({ db: db1, logger: logs1.logger });
    assert.match(first.secret, /^whsec_/);
    assert.equal(logs1.lines.filter((l) => l.webhookSecret === first.secret).length, 1, "printed once on the first start");
    await first.close();
    db1.close();
    const logs2 = new LogLatch();
    const second = new SqliteWebhookDispatcher({ db: file, logger: logs2.logger }); // a path: it opens (and closes) the file itself
    assert.equal(second.secret, first.secret);
    assert.equal(logs2.lines.filter((l) => "webhookSecret" in l).length, 0, "not printed again");
    await second.close();
  });

  it("GET /v1/webhooks/default/secret answers the replicate client with the key, and 401 without it", async () => {
    const d = new SqliteWebhookDispatcher({ db: new Database(":memory:") });
    const server = await SecretServer.create({ port: 0, apiKey: "hooks-key", logger: false, engineConfig: { numGpus: 1, intraOpNumThreads: 1 } }, d);
    try {
      await server.listen();
      const replicate = new Replicate({ auth: "hooks-key", baseUrl: `${server.url}/v1` });
      assert.deepEqual(await replicate.webhooks.default.secret.get(), { key: d.secret });
      const raw = await fetch(`${server.url}/v1/webhooks/default/secret`, { headers: { authorization: "Bearer hooks-key" } });
      assert.equal(raw.headers.get("cache-control"), "no-store");
      const anon = await fetch(`${server.url}/v1/webhooks/default/secret`);
      assert.equal(anon.status, 401);
      assert.doesNotMatch(await anon.text(), /whsec_/);
    } finally {
      await server.close();
      await d.close();
    }
  });
});
