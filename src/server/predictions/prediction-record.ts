import type { WebhookEvent } from "./webhook-types.js";

/** Replicate's prediction statuses; the last four are final. */
export type PredictionStatus = "starting" | "processing" | "succeeded" | "failed" | "canceled" | "aborted";

const FINAL: ReadonlySet<PredictionStatus> = new Set(["succeeded", "failed", "canceled", "aborted"]);

/** True for a status a prediction never leaves. */
export function isFinal(status: PredictionStatus): boolean {
  return FINAL.has(status);
}

/** One prediction as the store keeps it (times in ms since the epoch). */
export interface PredictionRecord {
  /** Insertion order: newest first in lists, and the cursor of pagination. */
  seq: number;
  id: string;
  /** 128 random bits in the URLs of its files and stream, which clients fetch without the API key. */
  token: string;
  model: string;
  version: string;
  /** The `input` as the client sent it. */
  input: Record<string, unknown>;
  status: PredictionStatus;
  /** File names of the output images (`0.png`, ...), once succeeded. */
  output: string[] | null;
  error: string | null;
  logs: string;
  createdAt: number;
  startedAt: number | null;
  completedAt: number | null;
  /** `Cancel-After`: when it is aborted (not started) or canceled (running). */
  deadline: number | null;
  webhook: string | null;
  webhookEventsFilter: WebhookEvent[] | null;
  /** Times it was started: more than 1 after a restart interrupted a run. */
  runs: number;
}
