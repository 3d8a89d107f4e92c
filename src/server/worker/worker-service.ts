import { createHash } from "node:crypto";
import { basename } from "node:path";
import { DiffusionEngine } from "../../engine/engine.js";
import type { OmniDiffusionConfigInput } from "../../core/config.js";
import { DiffusionOutput } from "../../core/output.js";
import { prefixedFields } from "../../core/limits.js";
import { OmniDiffusionRequest } from "../../core/request.js";
import type { OmniRequestOutput } from "../../core/request-output.js";
import { AbortedError, ClosedError, LimitExceededError, OmniError, QueueFullError, TimeoutError, UnhealthyError, ValidationError, toOmniError } from "../../errors/omni-error.js";
import { Deadline } from "../../policies/deadline.js";
import type { z } from "zod";
import { MAX_REQUESTS_PER_CALL, type rpcBodySchema } from "../../protocol/wire.js";
import { requestFromDict, type RequestDecodeOptions } from "../../protocol/request-codec.js";
import { uploadCapOf } from "../shared/edit-images.js";
import { toDiffusionOutput } from "../shared/wire-output.js";
import type { StepProgress } from "../../core/progress.js";

/** How long a finished result stays available to a retry of the same request id, ms. */
const RESULT_TTL_MS = 30_000;
/** Most finished results kept for retries. */
const RESULT_CACHE_SIZE = 64;
/** Retry-After sent while the model loads or the queue is full, ms. */
const RETRY_AFTER_MS = 1_000;

/** Reads one item of a generate call (a wire dict, a proto message) into a request, images bounded by `opts`. */
export type RequestParser<T> = (item: T, opts: RequestDecodeOptions) => OmniDiffusionRequest;

/** Per-call context a transport hands to {@link WorkerService.generate}. */
export interface GenerateContext {
  /** Remaining time of the client's deadline, ms (capped by the engine's `rpcTimeoutMs`). */
  timeoutMs?: number;
  onProgress?: (p: StepProgress) => void;
}

/** Readiness, as `/health`, `/ping` and the gRPC `Health` report it. */
export interface HealthReport {
  ready: boolean;
  reason: string;
  ranks: number;
  inFlight: number;
  queued: number;
}

/** Arguments of {@link WorkerService.rpc}, as the wire carries them. */
export interface RpcCall {
  method: string;
  args?: unknown[];
  kwargs?: Record<string, unknown>;
  uniqueReplyRank?: number | null;
  timeoutMs?: number | null;
}

/** An RPC as the HTTP, SageMaker and gRPC front ends receive it (`rpcBodySchema`), with the transport's own deadline, ms. */
export function rpcCallFromWire(b: z.output<typeof rpcBodySchema>, transportTimeoutMs?: number): RpcCall {
  const ms = Math.min(b.timeout ?? Number.POSITIVE_INFINITY, transportTimeoutMs ?? Number.POSITIVE_INFINITY);
  return { method: b.method, args: b.args, kwargs: b.kwargs, uniqueReplyRank: b.unique_reply_rank, timeoutMs: Number.isFinite(ms) ? ms : null };
}

/** A {@link HealthReport} as the wire carries it (`/health`, the SageMaker health invocation). */
export function healthBody(h: HealthReport) {
  return { status: h.ready ? "ok" : "unavailable", reason: h.reason, ranks: h.ranks, in_flight: h.inFlight, queued: h.queued };
}

interface Running {
  fingerprint: string;
  listeners: Set<(p: StepProgress) => void>;
  result: Promise<DiffusionOutput>;
}

/**
 * The transport-independent core of `omni-diffusion worker`: owns the engine (and so the local executor),
 * validates request dicts, and makes request ids idempotent — a request whose id is already running
 * attaches to that work (and its progress) instead of generating twice, and a finished result is kept
 * for {@link RESULT_TTL_MS} so a retry after a lost response does not regenerate either. The HTTP,
 * gRPC and SageMaker front ends only translate to and from it.
 */
export class WorkerService {
  #engine: DiffusionEngine | null = null;
  #startError: OmniError | null = null;
  #closed = false;
  #running = new Map<string, Running>();
  #recent = new Map<string, { fingerprint: string; out: DiffusionOutput; at: number }>();
  /** Resolves once the engine is up; rejects with its start-up error. */
  readonly ready: Promise<void>;

  constructor(engineConfig: OmniDiffusionConfigInput) {
    this.ready = DiffusionEngine.create(engineConfig).then(
      async (engine) => {
        if (this.#closed) {
          await engine.close();
          throw new ClosedError("worker service closed while starting");
        }
        this.#engine = engine;
      },
      (err: unknown) => {
        this.#startError = toOmniError(err);
        throw this.#startError;
      },
    );
    this.ready.catch(() => undefined);
  }

  /** The engine, or the 503 that says why there is none yet. */
  get engine(): DiffusionEngine {
    if (this.#closed) throw new ClosedError("the worker is shutting down", { data: { retryAfterMs: RETRY_AFTER_MS } });
    if (this.#engine) return this.#engine;
    if (this.#startError) throw new UnhealthyError(`the worker failed to start: ${this.#startError.message}`, { cause: this.#startError });
    throw new UnhealthyError("the worker is loading its model", { data: { retryAfterMs: RETRY_AFTER_MS } });
  }

  /** {@link validate}, then {@link run}. `parse` reads one item of the call (default: a wire dict). */
  async generate<T = unknown>(items: T[], ctx: GenerateContext = {}, parse: RequestParser<T> = requestFromDict): Promise<DiffusionOutput[]> {
    return this.run(this.validate(items, parse), ctx);
  }

  /**
   * Checks a call before anything runs, so a transport can still answer with a status: every item must be a
   * valid request (else a 400 naming `requests.<i>.<field>`), ids must be unique in the call, the worker must
   * be ready (503) and its queue must have room (429). The limits are the engine's, checked once when
   * {@link run} submits the call.
   */
  validate<T = unknown>(items: T[], parse: RequestParser<T> = requestFromDict): OmniDiffusionRequest[] {
    const engine = this.engine;
    if (items.length < 1 || items.length > MAX_REQUESTS_PER_CALL) {
      throw new ValidationError(`a call carries 1 to ${MAX_REQUESTS_PER_CALL} requests, got ${items.length}`, { field: "requests" });
    }
    // Images are held to serve's upload cap for this model before they are inflated.
    const opts = { images: uploadCapOf(engine.requestLimits, engine.modelLimits) };
    const requests = items.map((d, i) => parseAt(i, () => parse(d, opts)));
    const ids = new Set<string>();
    for (const [i, r] of requests.entries()) {
      if (ids.has(r.requestId)) throw new ValidationError(`request_id "${r.requestId}" appears twice in one call`, { field: `requests.${i}.request_id` });
      ids.add(r.requestId);
    }
    const fresh = requests.filter((r) => !this.#running.has(r.requestId) && !this.#recent.has(r.requestId)).length;
    const { queued } = engine.stats;
    if (fresh && queued + fresh > engine.config.limits.maxQueue) {
      throw new QueueFullError(`the worker's queue is full (${queued} waiting, limit ${engine.config.limits.maxQueue})`, { data: { retryAfterMs: RETRY_AFTER_MS } });
    }
    return requests;
  }

  /**
   * Runs validated requests; one DiffusionOutput per request, in order, each with its images or its error.
   * The call is submitted synchronously: a request beyond this worker's limits throws here (the engine's one
   * check, naming `requests.<i>.<field>`), and the requests submitted before it are withdrawn before the
   * engine dispatches them (it does so on a later turn), so nothing of a refused call runs.
   */
  run(requests: OmniDiffusionRequest[], ctx: GenerateContext = {}): Promise<DiffusionOutput[]> {
    const engine = this.engine;
    const timeoutMs = Math.min(ctx.timeoutMs ?? Number.POSITIVE_INFINITY, engine.config.rpcTimeoutMs);
    const started: string[] = [];
    try {
      return Promise.all(requests.map((r, i) => this.#one(engine, r, i, timeoutMs, started, ctx.onProgress)));
    } catch (err) {
      for (const id of started) void engine.abort(id).catch(() => undefined);
      throw err;
    }
  }

  /** One request: a cached result, the running work of the same id, or a new run (its id pushed to `started`). Throws only a call-level refusal. */
  #one(engine: DiffusionEngine, r: OmniDiffusionRequest, i: number, timeoutMs: number, started: string[], onProgress?: (p: StepProgress) => void): Promise<DiffusionOutput> {
    const id = r.requestId;
    const fingerprint = fingerprintOf(r);
    const conflict = () =>
      failed(id, new ValidationError(`request_id "${id}" is already in use with different parameters`, { field: "request_id", statusCode: 409 }));
    this.#expire();
    const done = this.#recent.get(id);
    if (done) return Promise.resolve(done.fingerprint === fingerprint ? done.out : conflict());
    let run = this.#running.get(id);
    if (run && run.fingerprint !== fingerprint) return Promise.resolve(conflict());
    if (!run) {
      const submitted = this.#start(engine, r, i, fingerprint, timeoutMs, onProgress !== undefined);
      if (submitted instanceof DiffusionOutput) return Promise.resolve(submitted);
      started.push(id);
      run = submitted;
    }
    return this.#attach(run, id, timeoutMs, onProgress);
  }

  /** Waits for a run's result as long as this caller's own deadline allows (an attached retry has its own). Never throws. */
  async #attach(run: Running, id: string, timeoutMs: number, onProgress?: (p: StepProgress) => void): Promise<DiffusionOutput> {
    if (onProgress) run.listeners.add(onProgress);
    const wait = new Deadline(timeoutMs, undefined, () => deadlinePassed(id, timeoutMs));
    try {
      return await wait.race(run.result);
    } catch (err) {
      return failed(id, toOmniError(err));
    } finally {
      wait.dispose();
      if (onProgress) run.listeners.delete(onProgress);
    }
  }

  /**
   * Starts the work of a request id. Steps are asked of the engine only when the starting call streams
   * them; a caller attaching later (a retry of the same id) sees progress only if the first one streamed.
   */
  #start(engine: DiffusionEngine, r: OmniDiffusionRequest, i: number, fingerprint: string, timeoutMs: number, streams: boolean): Running | DiffusionOutput {
    const id = r.requestId;
    const listeners = new Set<(p: StepProgress) => void>();
    const deadline = new Deadline(timeoutMs, undefined, () => deadlinePassed(id, timeoutMs));
    const prefix = `requests.${i}.`;
    let pending: Promise<OmniRequestOutput>;
    try {
      pending = engine.submit(r, {
        signal: deadline.signal,
        fieldName: prefixedFields(prefix),
        ...(streams ? { onProgress: (p: StepProgress) => listeners.forEach((l) => l(p)) } : {}),
      });
    } catch (err) {
      deadline.dispose();
      const e = toOmniError(err);
      // A value beyond this worker's limits refuses the call (400, requests.<i>.<field>); anything else refused
      // on arrival (a size off the model's multiple, a sampler that does not fit) fails that request alone,
      // named as its own dict names it, and the others run.
      if (e instanceof LimitExceededError) throw e;
      return failed(id, withoutPrefix(e, prefix));
    }
    const result = pending
      .then((out) => {
        if (out.error) throw out.error;
        const d = toDiffusionOutput(out);
        this.#recent.set(id, { fingerprint, out: d, at: Date.now() });
        return d;
      })
      .catch((err: unknown) => {
        const e = toOmniError(err);
        // The engine reports a signal abort as an abort; a passed deadline is a timeout.
        return failed(id, e instanceof AbortedError && deadline.signal.aborted && deadline.signal.reason instanceof TimeoutError ? deadline.signal.reason : e);
      })
      .finally(() => {
        deadline.dispose();
        this.#running.delete(id);
      });
    const run = { fingerprint, listeners, result };
    this.#running.set(id, run);
    return run;
  }

  #expire(): void {
    const now = Date.now();
    for (const [id, e] of this.#recent) if (now - e.at > RESULT_TTL_MS || this.#recent.size > RESULT_CACHE_SIZE) this.#recent.delete(id);
  }

  /**
   * `collectiveRpc` on the engine's ranks. `generate` is refused here: it would bypass the worker's limits,
   * queue and request-id idempotency, which the generate route applies.
   */
  async rpc(call: RpcCall): Promise<unknown> {
    const engine = this.engine;
    if (call.method === "generate") {
      throw new ValidationError('"generate" is not callable as an RPC; send requests to the generate API (POST /v1/diffusion/generate, gRPC Generate)', { field: "method" });
    }
    const timeout = Math.min(call.timeoutMs ?? Number.POSITIVE_INFINITY, engine.config.rpcTimeoutMs);
    const result = await engine.collectiveRpc(call.method, { args: call.args ?? [], kwargs: call.kwargs ?? {}, uniqueReplyRank: call.uniqueReplyRank ?? undefined, timeout });
    return call.method === "getStats" ? withoutHostDetails(result) : result;
  }

  /** Stops running requests between steps; returns the ids that were running. */
  async abort(ids: string[]): Promise<string[]> {
    const engine = this.engine;
    const hits = await Promise.all(ids.map(async (id) => ((await engine.abort(id)) ? id : null)));
    return hits.filter((id): id is string => id !== null);
  }

  /** Ready when the engine is up and every rank answers a ping within `timeoutMs`. */
  async health(timeoutMs: number): Promise<HealthReport> {
    const base = { ranks: 0, inFlight: 0, queued: 0 };
    let engine: DiffusionEngine;
    try {
      engine = this.engine;
    } catch (err) {
      return { ready: false, reason: toOmniError(err).message, ...base };
    }
    const stats = { ranks: engine.config.numGpus, inFlight: engine.stats.inFlight, queued: engine.stats.queued };
    try {
      await engine.checkHealth({ timeout: timeoutMs });
      return { ready: true, reason: "ok", ...stats };
    } catch (err) {
      return { ready: false, reason: toOmniError(err).message, ...stats };
    }
  }

  /** Stops taking work, then closes the engine (running batches finish first, by their deadline at worst). */
  async close(): Promise<void> {
    this.#closed = true;
    await this.ready.catch(() => undefined);
    await this.#engine?.close();
  }
}

/**
 * `getStats` replies as a remote caller sees them: without the process id and the model's path on this
 * host (the model's folder name stays, as `model.name`).
 */
function withoutHostDetails(result: unknown): unknown {
  const strip = (s: unknown): unknown => {
    if (s === null || typeof s !== "object") return s;
    const { pid: _pid, model, ...rest } = s as { pid?: unknown; model?: unknown };
    if (model === null || typeof model !== "object") return rest;
    const { modelDir, ...info } = model as { modelDir?: unknown };
    return { ...rest, model: { ...info, ...(typeof modelDir === "string" ? { name: basename(modelDir) } : {}) } };
  };
  return Array.isArray(result) ? result.map(strip) : strip(result);
}

function deadlinePassed(requestId: string, timeoutMs: number): TimeoutError {
  return new TimeoutError(`request ${requestId} passed its deadline of ${timeoutMs}ms on the worker`, { data: { requestId, timeoutMs } });
}

/** Runs `parse` for the `i`th item of a call; its error becomes a 400 naming `requests.<i>.<field>`. */
function parseAt(i: number, parse: () => OmniDiffusionRequest): OmniDiffusionRequest {
  try {
    return parse();
  } catch (err) {
    const e = toOmniError(err);
    const at = (path: unknown) => (typeof path === "string" && path ? `requests.${i}.${path}` : `requests.${i}`);
    const issues = Array.isArray(e.data.issues) ? (e.data.issues as string[]).map((x) => `${at("")}.${x}`.replace(/\.\(root\)/, "")) : [`${at("")}: ${e.message}`];
    throw new ValidationError(`invalid request: ${issues.join("; ")}`, { field: at(e.data.field), cause: e, data: { issues } });
  }
}

/** `e` as the request's own error: the call's `requests.<i>.` prefix taken out of its field and message. */
function withoutPrefix(e: OmniError, prefix: string): OmniError {
  if (!(e instanceof ValidationError) || !e.field?.startsWith(prefix)) return e;
  return new ValidationError(e.message.split(prefix).join(""), { field: e.field.slice(prefix.length), data: e.data, cause: e.cause });
}

/**
 * A request's identity for idempotency: its fields, and a hash of its images' raw bytes (never a PNG
 * encode: a retried edit is recognised without re-encoding its image).
 */
function fingerprintOf(r: OmniDiffusionRequest): string {
  const { image, mask, ...fields } = r.toTransfer();
  const hash = createHash("sha256");
  for (const img of [image, mask]) {
    if (img) hash.update(`${img.width}x${img.height}:`).update(img.data);
    hash.update("|");
  }
  return `${JSON.stringify(fields)}#${hash.digest("hex")}`;
}

function failed(requestId: string, err: OmniError): DiffusionOutput {
  return new DiffusionOutput({ errors: { [requestId]: err } });
}
