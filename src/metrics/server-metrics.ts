import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { DiffusionEngine } from "../engine/engine.js";
import type { StageMetrics } from "../core/output.js";

/** How a generation request ended, as a metric label. */
export type GenerationOutcome = "ok" | "error" | "aborted";

/** Stage names of {@link StageMetrics} and the label each gets in `omni_stage_duration_seconds`. */
const STAGES: [keyof StageMetrics & string, string][] = [
  ["queueMs", "queue"],
  ["encodeTextMs", "encode_text"],
  ["denoiseMs", "denoise"],
  ["decodeMs", "decode"],
  ["totalMs", "execute"],
];

const LATENCY_BUCKETS = [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
const STEP_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
const ROW_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256];

/**
 * The Prometheus metrics of one server, in a registry of its own (several servers in one process do not
 * collide). Engine-side numbers (queue depth, batch sizes, worker restarts, endpoint state) are read from
 * the engine when scraped or pushed by its batch and step events (UNet rows and duration per call, time to
 * first step); request-side numbers (latency, stage durations, queue wait) are recorded by the routes.
 *
 * @example
 * ```ts
 * import { DiffusionEngine } from "../engine/engine.js";
 * const engine = await DiffusionEngine.create();
 * const metrics = new ServerMetrics(engine);
 * const text = await metrics.registry.metrics();
 * metrics.dispose();
 * await engine.close();
 * ```
 */
export class ServerMetrics {
  readonly registry = new Registry();
  readonly #http: Counter<"method" | "route" | "status_code">;
  readonly #httpDuration: Histogram<"method" | "route">;
  readonly #generations: Counter<"outcome">;
  readonly #images: Counter;
  readonly #latency: Histogram<"outcome">;
  readonly #stages: Histogram<"stage">;
  readonly #batchSize: Histogram;
  readonly #batchDuration: Histogram;
  readonly #healthy: Gauge;
  readonly #queueWait: Histogram;
  readonly #subs: { dispose(): void }[];

  constructor(engine: DiffusionEngine, opts: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });
    this.#http = new Counter({
      name: "omni_http_requests_total",
      help: "HTTP requests by method, route and status code (499: the client went away first).",
      labelNames: ["method", "route", "status_code"],
      registers,
    });
    this.#httpDuration = new Histogram({
      name: "omni_http_request_duration_seconds",
      help: "Time from receiving an HTTP request to the end of its response.",
      labelNames: ["method", "route"],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.#generations = new Counter({
      name: "omni_generation_requests_total",
      help: "Image generation requests by outcome.",
      labelNames: ["outcome"],
      registers,
    });
    this.#images = new Counter({ name: "omni_images_generated_total", help: "Images returned to clients.", registers });
    this.#latency = new Histogram({
      name: "omni_generation_latency_seconds",
      help: "End-to-end latency of image generation requests (queue + execution + encoding), by outcome.",
      labelNames: ["outcome"],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.#stages = new Histogram({
      name: "omni_stage_duration_seconds",
      help: "Per-request stage durations reported by the engine: queue, encode_text, denoise, decode, execute.",
      labelNames: ["stage"],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.#batchSize = new Histogram({
      name: "omni_batch_size",
      help: "Requests per executor call the engine made (1 under continuous batching: requests share UNet calls instead, see omni_unet_batch_rows).",
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
      registers,
    });
    this.#batchDuration = new Histogram({
      name: "omni_batch_duration_seconds",
      help: "Wall-clock time of one batch on the executor.",
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.#healthy = new Gauge({ name: "omni_executor_healthy", help: "1 while the executor passed its last health check.", registers });
    this.#healthy.set(1);
    new Gauge({
      name: "omni_queue_depth",
      help: "Requests waiting in the engine queue.",
      registers,
      collect() {
        this.set(engine.stats.queued);
      },
    });
    new Gauge({
      name: "omni_requests_running",
      help: "Requests currently executing on the executor.",
      registers,
      collect() {
        this.set(engine.stats.inFlight);
      },
    });
    const restartsSeen = new Map<string, number>();
    new Counter({
      name: "omni_worker_restarts_total",
      help: "Worker (endpoint) restarts, by endpoint.",
      labelNames: ["endpoint"],
      registers,
      collect() {
        // The executor keeps absolute counts; a counter only moves forward, by the difference since the last scrape.
        for (const e of engine.executor.endpointStates()) {
          const prev = restartsSeen.get(e.endpoint) ?? 0;
          if (e.restarts > prev) this.inc({ endpoint: e.endpoint }, e.restarts - prev);
          else if (prev === 0) this.inc({ endpoint: e.endpoint }, 0);
          restartsSeen.set(e.endpoint, Math.max(prev, e.restarts));
        }
      },
    });
    new Gauge({
      name: "omni_executor_endpoint_state",
      help: "1 for the current state of each executor endpoint (worker rank or remote URL).",
      labelNames: ["endpoint", "state"],
      registers,
      collect() {
        this.reset();
        for (const e of engine.executor.endpointStates()) this.set({ endpoint: e.endpoint, state: e.state }, 1);
      },
    });
    this.#queueWait = new Histogram({
      name: "omni_queue_wait_seconds",
      help: "Time a successful request waited before denoising began: the engine's queue plus the worker's (waiting to join its step loop).",
      buckets: LATENCY_BUCKETS,
      registers,
    });
    const firstStep = new Histogram({
      name: "omni_time_to_first_step_seconds",
      help: "Time from a request entering the engine's queue to the end of its first denoising step.",
      buckets: LATENCY_BUCKETS,
      registers,
    });
    const rows = new Histogram({
      name: "omni_unet_batch_rows",
      help: "UNet rows per UNet call (images of every request sharing the call, doubled under classifier-free guidance).",
      buckets: ROW_BUCKETS,
      registers,
    });
    const stepDuration = new Histogram({
      name: "omni_step_duration_seconds",
      help: "Wall-clock time of one UNet call (one denoising step of every request in it).",
      buckets: STEP_BUCKETS,
      registers,
    });
    new Gauge({
      name: "omni_batching_policy",
      help: "1 for the batching policy in effect (continuous, request or none).",
      labelNames: ["policy"],
      registers,
      collect() {
        this.reset();
        this.set({ policy: engine.batching }, 1);
      },
    });
    // Executors with metrics of their own (the queue executor: its Redis queue's depth and live workers) add them here.
    (engine.executor as { registerMetrics?: (r: Registry) => void }).registerMetrics?.(this.registry);
    this.#subs = [
      engine.onBatch((e) => {
        this.#batchSize.observe(e.requests);
        this.#batchDuration.observe(e.durationMs / 1000);
      }),
      engine.onStep((e) => {
        if (e.firstStep) firstStep.observe(e.sinceQueuedMs / 1000);
        // Every request of a UNet call reports it; count it once.
        if (e.batch?.primary) {
          rows.observe(e.batch.rows);
          stepDuration.observe(e.batch.ms / 1000);
        }
      }),
    ];
  }

  /** One finished HTTP exchange. */
  httpRequest(method: string, route: string, statusCode: number, seconds: number): void {
    this.#http.inc({ method, route, status_code: String(statusCode) });
    this.#httpDuration.observe({ method, route }, seconds);
  }

  /** One finished generation request, with the engine's stage durations when it produced images. */
  generation(outcome: GenerationOutcome, seconds: number, stages?: StageMetrics, images = 0): void {
    this.#generations.inc({ outcome });
    this.#latency.observe({ outcome }, seconds);
    if (images > 0) this.#images.inc(images);
    if (!stages) return;
    if (typeof stages.queueMs === "number" && Number.isFinite(stages.queueMs)) this.#queueWait.observe(stages.queueMs / 1000);
    for (const [key, stage] of STAGES) {
      const ms = stages[key];
      if (typeof ms === "number" && Number.isFinite(ms)) this.#stages.observe({ stage }, ms / 1000);
    }
  }

  /** Result of the last health check. */
  setHealthy(healthy: boolean): void {
    this.#healthy.set(healthy ? 1 : 0);
  }

  /** Unsubscribes from the engine. */
  dispose(): void {
    for (const sub of this.#subs) sub.dispose();
    this.registry.clear();
  }
}
