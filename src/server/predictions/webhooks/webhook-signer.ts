/**
 * Standard Webhooks signing, through the `standardwebhooks` package's own signer so that what we send is what
 * its `verify` (and Replicate's `validateWebhook`) compute: `v1,<base64 HMAC-SHA256(id.timestamp.body)>`.
 */
import { Webhook } from "standardwebhooks";

/** The three headers of one attempt. */
export interface WebhookHeaders {
  "webhook-id": string;
  "webhook-timestamp": string;
  "webhook-signature": string;
}

/** Signs deliveries with one secret. */
export class WebhookSigner {
  readonly #webhook: Webhook;

  constructor(secret: string) {
    this.#webhook = new Webhook(secret);
  }

  /** The headers of one attempt of delivery `webhookId`, stamped `nowMs`. */
  headers(webhookId: string, nowMs: number, body: string): WebhookHeaders {
    const stamp = new Date(nowMs);
    return {
      "webhook-id": webhookId,
      "webhook-timestamp": String(Math.floor(nowMs / 1000)),
      "webhook-signature": this.#webhook.sign(webhookId, stamp, body),
    };
  }
}
