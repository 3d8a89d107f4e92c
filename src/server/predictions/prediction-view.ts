import type { PredictionRecord } from "./prediction-record.js";
import type { WebhookDeliveryState } from "./webhook-types.js";

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** URL of one output file: a capability URL (the prediction's token), fetched without the API key as Replicate's are. */
export function fileUrl(base: string, rec: Pick<PredictionRecord, "id" | "token">, name: string): string {
  return `${base}/v1/predictions/${rec.id}/files/${rec.token}/${name}`;
}

/** URL of the prediction's event stream: a capability URL too (the official client sends no key to it). */
export function streamUrl(base: string, rec: Pick<PredictionRecord, "id" | "token">): string {
  return `${base}/v1/predictions/${rec.id}/stream/${rec.token}`;
}

/**
 * The prediction object as Replicate's API returns it. `base` is the server's public URL (`--public-url`, else
 * the address it listens on): the client follows `urls` and fetches `output` as they are. Our additions:
 * `metrics.queue_time`, `queue_position` (1-based place in line while it waits, else null), and
 * `webhook_deliveries` when a webhook was asked for.
 */
export function renderPrediction(rec: PredictionRecord, base: string, deliveries: WebhookDeliveryState[] | null = null, queuePosition = 0): Record<string, unknown> {
  const metrics: Record<string, number> = {};
  if (rec.startedAt !== null) metrics.queue_time = (rec.startedAt - rec.createdAt) / 1000;
  if (rec.completedAt !== null && rec.startedAt !== null) metrics.predict_time = (rec.completedAt - rec.startedAt) / 1000;
  if (rec.completedAt !== null) metrics.total_time = (rec.completedAt - rec.createdAt) / 1000;
  if (rec.output) metrics.image_count = rec.output.length;
  return {
    id: rec.id,
    model: rec.model,
    version: rec.version,
    input: rec.input,
    logs: rec.logs,
    output: rec.output ? rec.output.map((n) => fileUrl(base, rec, n)) : null,
    data_removed: false,
    error: rec.error,
    status: rec.status,
    queue_position: queuePosition > 0 ? queuePosition : null,
    source: "api",
    created_at: iso(rec.createdAt),
    started_at: iso(rec.startedAt),
    completed_at: iso(rec.completedAt),
    urls: {
      get: `${base}/v1/predictions/${rec.id}`,
      cancel: `${base}/v1/predictions/${rec.id}/cancel`,
      stream: streamUrl(base, rec),
    },
    metrics,
    ...(rec.webhook
      ? {
          webhook: rec.webhook,
          webhook_events_filter: rec.webhookEventsFilter ?? ["start", "output", "logs", "completed"],
          webhook_deliveries: (deliveries ?? []).map((d) => ({
            webhook_id: d.webhookId,
            event: d.event,
            status: d.status,
            attempts: d.attempts,
            last_status_code: d.lastStatusCode,
            last_error: d.lastError,
            next_attempt_at: d.nextAttemptAt,
          })),
        }
      : {}),
  };
}
