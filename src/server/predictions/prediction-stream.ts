import type { FastifyReply } from "fastify";
import { fileUrl } from "./prediction-view.js";
import type { PredictionEvent } from "./prediction-events.js";
import type { PredictionEventBus } from "./prediction-store-api.js";
import { isFinal, type PredictionRecord } from "./prediction-record.js";

/** One SSE event whose data is `text` as it is (Replicate's events carry plain text, not JSON strings). */
function sse(event: string, text: string): string {
  return `event: ${event}\n${text.split("\n").map((l) => `data: ${l}`).join("\n")}\n\n`;
}

/** A `preview` event: the image being denoised as a PNG data URL. */
function previewSse(png: Buffer): string {
  return sse("preview", `data:image/png;base64,${png.toString("base64")}`);
}

/**
 * `urls.stream`: Server-Sent Events as Replicate sends them: `logs` (progress lines), `output` (one event per
 * image URL), `error` (the failure), then `done` (`{}`, or `{"reason":"canceled"}` ...). Our addition:
 * `preview` events whose data is a PNG data URL of the image being denoised (the cheap preview path).
 * A client that connects late gets the logs so far first; one that connects after the end gets the outcome.
 */
export function streamPrediction(reply: FastifyReply, rec: PredictionRecord, events: PredictionEventBus, base: string): void {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache, no-transform", "x-accel-buffering": "no" });
  res.flushHeaders();
  const write = (chunk: string) => {
    if (!res.writableEnded && !res.destroyed) res.write(chunk);
  };
  const end = (e: Extract<PredictionEvent, { type: "done" }>) => {
    if (e.status === "failed") write(sse("error", e.error ?? "the prediction failed"));
    write(sse("done", e.status === "succeeded" ? "{}" : JSON.stringify({ reason: e.status === "failed" ? "error" : e.status })));
    res.end();
  };
  if (rec.logs) write(sse("logs", rec.logs));
  if (isFinal(rec.status)) {
    // A run that ended before this stream connected: its last preview, if no stream heard it, then the outputs.
    const preview = events.takeFinalPreview(rec.id);
    if (preview?.type === "preview") write(previewSse(preview.png));
    for (const name of rec.output ?? []) write(sse("output", fileUrl(base, rec, name)));
    end({ type: "done", status: rec.status, error: rec.error });
    return;
  }
  const off = events.subscribe(rec.id, (e) => {
    if (e.type === "logs") write(sse("logs", e.text));
    else if (e.type === "preview") write(previewSse(e.png));
    else if (e.type === "output") for (const name of e.names) write(sse("output", fileUrl(base, rec, name)));
    else {
      off();
      end(e);
    }
  });
  res.once("close", off);
}
