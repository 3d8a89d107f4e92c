import type { FastifyPluginAsync } from "fastify";
import type { WebhookDispatcher } from "../webhook-types.js";

/**
 * `GET /v1/webhooks/default/secret` → `{ key: "whsec_..." }`, as Replicate answers it (the official client's
 * `webhooks.default.secret.get()`). Not a public route: registered inside the app it is behind the API key
 * like every other route. The predictions plugin registers it with its dispatcher.
 */
export const webhookSecretRoute: FastifyPluginAsync<{ dispatcher: Pick<WebhookDispatcher, "secret"> }> = async (app, { dispatcher }) => {
  app.get("/v1/webhooks/default/secret", async (_req, reply) => {
    void reply.header("cache-control", "no-store"); // a secret: no proxy or browser cache keeps it
    return { key: dispatcher.secret };
  });
};
