/**
 * The seam between the predictions API (jobs, store, routes) and webhook delivery (signing, retries, SSRF
 * guard). Jobs call `notify` as a prediction moves; the dispatcher decides when and how often to send.
 */

/** Replicate's webhook events. `start` and `completed` are always sent; `output` and `logs` at most one per 500 ms. */
export const WEBHOOK_EVENTS = ["start", "output", "logs", "completed"] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];

/** Where a prediction's webhooks go, as the client asked at creation. */
export interface WebhookTarget {
  url: string;
  /** `webhook_events_filter`; null: every event. */
  eventsFilter: readonly WebhookEvent[] | null;
}

/** One delivery as the prediction shows it (`webhook_deliveries` in our prediction object). */
export interface WebhookDeliveryState {
  webhookId: string;
  event: WebhookEvent;
  status: "pending" | "delivered" | "failed";
  attempts: number;
  lastStatusCode: number | null;
  lastError: string | null;
  nextAttemptAt: string | null;
}

export interface WebhookDispatcher {
  /**
   * A prediction moved: `body` is the prediction object (Replicate's JSON shape) at this moment, sent as the
   * webhook's payload. Durable: once `notify` returns, the delivery survives a restart (it is in the store).
   */
  notify(predictionId: string, event: WebhookEvent, body: Record<string, unknown>, target: WebhookTarget): void;
  /** The deliveries of one prediction, oldest first. */
  deliveries(predictionId: string): WebhookDeliveryState[];
  /** Throws a ValidationError naming `webhook` for a URL that is not http(s), or resolves to a refused address. */
  checkUrl(url: string): Promise<void>;
  /** Drops a deleted prediction's delivery records (retention); a pending delivery of it is not sent. */
  forget?(predictionId: string): void;
  /** The `whsec_...` signing secret (`GET /v1/webhooks/default/secret`). */
  readonly secret: string;
  /** Stops timers and in-flight attempts; pending deliveries stay in the store for the next start. */
  close(): Promise<void>;
}
