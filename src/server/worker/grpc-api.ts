import * as grpc from "@grpc/grpc-js";
import { newRequestId } from "../../core/request.js";
import { toOmniError } from "../../errors/omni-error.js";
import { CHANNEL_OPTIONS, MAX_MESSAGE_BYTES, omniDiffusionService, toServiceError } from "../../protocol/grpc-codec.js";
import { outputToProto, type ProtoRequest, type ProtoRpcRequest } from "../../protocol/proto-codec.js";
import { requestFromProtoMessage } from "../../protocol/request-codec.js";
import { abortBodySchema, rpcBodySchema } from "../../protocol/wire.js";
import { zodToValidationError } from "../../utils/zod-error.js";
import { publicError, publicOutput, type ErrorLog } from "../shared/public-error.js";
import { parseJsonSafely } from "../shared/safe-json.js";
import { guardInterceptor, tolerantService } from "./grpc-guard.js";
import { rpcCallFromWire, type WorkerService } from "./worker-service.js";

/** Options of {@link startGrpcApi}. */
export interface GrpcApiOptions {
  host: string;
  port: number;
  apiKey?: string;
  healthTimeoutMs: number;
  /** Largest request message, bytes (replies may be larger: they carry images). */
  maxMessageBytes: number;
  /** Deepest nesting of `args_json`/`kwargs_json`. */
  maxJsonDepth: number;
  /** Receives the details of internal errors, which clients see only as a request id. */
  log: ErrorLog;
}

/** A listening gRPC front end. */
export interface GrpcApi {
  /** `host:port` it listens on. */
  address: string;
  close(): Promise<void>;
}

type Unary<Req, Res> = grpc.handleUnaryCall<Req, Res>;

/** Remaining ms of a call's deadline (undefined when the client set none). */
function remainingMs(call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>): number | undefined {
  const d = call.getDeadline();
  const at = d instanceof Date ? d.getTime() : d;
  return Number.isFinite(at) ? Math.max(1, at - Date.now()) : undefined;
}

/** The last resort when even the error could not be sent: a bare status, which cannot fail to encode. */
const BARE_INTERNAL = { code: grpc.status.INTERNAL, details: "internal error; the details are in the server log" } as grpc.ServiceError;

/**
 * Serves the `OmniDiffusion` service of `proto/omni_diffusion.proto` with `@grpc/grpc-js`, in front of the
 * same {@link WorkerService} as the HTTP API: the key checked from metadata before the message is read
 * (Health excepted), request messages capped at `maxMessageBytes`, invalid protobuf as INVALID_ARGUMENT,
 * the client's deadline as the requests' deadline, and every failure, whatever it is, as that call's
 * status plus the `omni-error-bin` metadata (internal details only in the log). No handler can throw past
 * its call. Unknown service methods get grpc-js's UNIMPLEMENTED; unknown RPC methods a NOT_FOUND.
 */
export async function startGrpcApi(service: WorkerService, opts: GrpcApiOptions): Promise<GrpcApi> {
  const server = new grpc.Server({
    ...CHANNEL_OPTIONS,
    "grpc.max_receive_message_length": opts.maxMessageBytes,
    "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
    interceptors: [guardInterceptor(opts.apiKey, new Set(["Health"]))],
  });
  const statusOf = (err: unknown, requestId: string) => toServiceError(publicError(toOmniError(err), requestId, opts.log)) as grpc.ServiceError;
  const unary = <Req, Res>(fn: (call: grpc.ServerUnaryCall<Req, Res>, requestId: string) => Promise<Res>): Unary<Req, Res> => (call, cb) => {
    const requestId = newRequestId();
    const fail = (err: unknown) => {
      try {
        cb(statusOf(err, requestId));
      } catch (again) {
        opts.log(toOmniError(again), requestId);
        cb(BARE_INTERNAL);
      }
    };
    let pending: Promise<Res>;
    try {
      pending = fn(call, requestId);
    } catch (err) {
      return fail(err);
    }
    pending.then((res) => {
      try {
        cb(null, res);
      } catch (err) {
        fail(err);
      }
    }, fail);
  };
  const outputsOf = (outputs: Parameters<typeof publicOutput>[0][]) => outputs.map((o) => outputToProto(publicOutput(o, opts.log)));

  const impl: grpc.UntypedServiceImplementation = {
    Generate: unary<{ requests?: ProtoRequest[] }, unknown>(async (call) => {
      const outputs = await service.generate(call.request.requests ?? [], { timeoutMs: remainingMs(call) }, requestFromProtoMessage);
      return { outputs: outputsOf(outputs) };
    }),
    GenerateStream: (call: grpc.ServerWritableStream<{ requests?: ProtoRequest[] }, unknown>) => {
      const requestId = newRequestId();
      const fail = (err: unknown) => {
        try {
          call.emit("error", statusOf(err, requestId));
        } catch (again) {
          opts.log(toOmniError(again), requestId);
          call.emit("error", BARE_INTERNAL);
        }
      };
      const write = (msg: unknown) => {
        if (!call.cancelled && !call.writableEnded) call.write(msg);
      };
      try {
        service
          .generate(
            call.request.requests ?? [],
            {
              timeoutMs: remainingMs(call),
              onProgress: (p) => write({ progress: { request_id: p.requestId, step: p.step, total_steps: p.totalSteps } }),
            },
            requestFromProtoMessage,
          )
          .then((outputs) => {
            write({ result: { outputs: outputsOf(outputs) } });
            call.end();
          })
          .catch(fail);
      } catch (err) {
        fail(err);
      }
    },
    CollectiveRpc: unary<ProtoRpcRequest, unknown>(async (call) => {
      const m = call.request;
      const json = (text: string | undefined, fallback: unknown, field: string) => (text ? parseJsonSafely(text, { maxDepth: opts.maxJsonDepth, field }) : fallback);
      const parsed = rpcBodySchema.safeParse({ method: m.method, args: json(m.args_json, [], "args_json"), kwargs: json(m.kwargs_json, {}, "kwargs_json"), unique_reply_rank: m.unique_reply_rank });
      if (!parsed.success) throw zodToValidationError(parsed.error, "CollectiveRpc request");
      const result = await service.rpc(rpcCallFromWire(parsed.data, remainingMs(call)));
      return { result_json: JSON.stringify(result ?? null) };
    }),
    Health: unary<unknown, unknown>(async () => {
      const h = await service.health(opts.healthTimeoutMs);
      return { ready: h.ready, reason: h.reason, ranks: h.ranks, in_flight: h.inFlight, queued: h.queued };
    }),
    Abort: unary<{ request_ids?: string[] }, unknown>(async (call) => {
      const parsed = abortBodySchema.safeParse({ request_ids: call.request.request_ids ?? [] });
      if (!parsed.success) throw zodToValidationError(parsed.error, "Abort request");
      return { aborted: await service.abort(parsed.data.request_ids) };
    }),
  };
  server.addService(tolerantService(omniDiffusionService().service), impl);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${opts.host}:${opts.port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(toOmniError(err)) : resolve(p))),
  );
  return {
    address: `${opts.host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        // Give running calls a moment to finish, then cut them off: close must not wait forever.
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 2_000);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      }),
  };
}
