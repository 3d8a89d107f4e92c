import * as grpc from "@grpc/grpc-js";
import { ValidationError, toOmniError } from "../../errors/omni-error.js";
import { CHANNEL_OPTIONS, omniDiffusionService, toServiceError } from "../../executors/shared/grpc-codec.js";
import { outputToProto, requestFromProto, type ProtoRequest, type ProtoRpcRequest } from "../../executors/shared/proto-codec.js";
import { abortBodySchema, rpcBodySchema } from "../../executors/shared/wire.js";
import { zodToValidationError } from "../../utils/zod-error.js";
import { checkApiKey } from "../openai/api-key.js";
import { rpcCallFromWire, type WorkerService } from "./worker-service.js";

/** Options of {@link startGrpcApi}. */
export interface GrpcApiOptions {
  host: string;
  port: number;
  apiKey?: string;
  healthTimeoutMs: number;
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

/**
 * Serves the `OmniDiffusion` service of `proto/omni_diffusion.proto` with `@grpc/grpc-js`, in front of the
 * same {@link WorkerService} as the HTTP API: message size limits for image batches, the client's
 * deadline as the requests' deadline, `authorization: Bearer <key>` metadata when a key is set (Health
 * excepted), and failures as a status plus the `omni-error` metadata. Unknown service methods get
 * grpc-js's UNIMPLEMENTED; unknown RPC methods a NOT_FOUND.
 */
export async function startGrpcApi(service: WorkerService, opts: GrpcApiOptions): Promise<GrpcApi> {
  const server = new grpc.Server(CHANNEL_OPTIONS);
  const authorized = (md: grpc.Metadata): boolean | ReturnType<typeof toServiceError> => {
    if (!opts.apiKey) return true;
    const v = md.get("authorization")[0];
    const refusal = checkApiKey(typeof v === "string" ? v : undefined, opts.apiKey);
    return refusal ? toServiceError(refusal) : true;
  };
  const guard = <Req, Res>(fn: (call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>, open = false): Unary<Req, Res> => (call, cb) => {
    const auth = open ? true : authorized(call.metadata);
    if (auth !== true) return cb(auth as grpc.ServiceError);
    fn(call).then(
      (res) => cb(null, res),
      (err: unknown) => cb(toServiceError(err) as grpc.ServiceError),
    );
  };

  const impl: grpc.UntypedServiceImplementation = {
    Generate: guard<{ requests?: ProtoRequest[] }, unknown>(async (call) => {
      const outputs = await service.generate((call.request.requests ?? []).map(requestFromProto), { timeoutMs: remainingMs(call) });
      return { outputs: outputs.map(outputToProto) };
    }),
    GenerateStream: (call: grpc.ServerWritableStream<{ requests?: ProtoRequest[] }, unknown>) => {
      const auth = authorized(call.metadata);
      if (auth !== true) return call.emit("error", auth);
      const write = (msg: unknown) => {
        if (!call.cancelled && !call.writableEnded) call.write(msg);
      };
      service
        .generate((call.request.requests ?? []).map(requestFromProto), {
          timeoutMs: remainingMs(call),
          onProgress: (p) => write({ progress: { request_id: p.requestId, step: p.step, total_steps: p.totalSteps } }),
        })
        .then(
          (outputs) => {
            write({ result: { outputs: outputs.map(outputToProto) } });
            call.end();
          },
          (err: unknown) => call.emit("error", toServiceError(err)),
        );
    },
    CollectiveRpc: guard<ProtoRpcRequest, unknown>(async (call) => {
      const m = call.request;
      const parsed = rpcBodySchema.safeParse({ method: m.method, args: json(m.args_json, [], "args_json"), kwargs: json(m.kwargs_json, {}, "kwargs_json"), unique_reply_rank: m.unique_reply_rank });
      if (!parsed.success) throw zodToValidationError(parsed.error, "CollectiveRpc request");
      const result = await service.rpc(rpcCallFromWire(parsed.data, remainingMs(call)));
      return { result_json: JSON.stringify(result ?? null) };
    }),
    Health: guard<unknown, unknown>(async () => {
      const h = await service.health(opts.healthTimeoutMs);
      return { ready: h.ready, reason: h.reason, ranks: h.ranks, in_flight: h.inFlight, queued: h.queued };
    }, true),
    Abort: guard<{ request_ids?: string[] }, unknown>(async (call) => {
      const parsed = abortBodySchema.safeParse({ request_ids: call.request.request_ids ?? [] });
      if (!parsed.success) throw zodToValidationError(parsed.error, "Abort request");
      return { aborted: await service.abort(parsed.data.request_ids) };
    }),
  };
  server.addService(omniDiffusionService().service, impl);
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

function json(text: string | undefined, fallback: unknown, field: string): unknown {
  if (!text) return fallback;
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ValidationError(`${field} is not valid JSON: ${(err as Error).message}`, { field, cause: err });
  }
}
