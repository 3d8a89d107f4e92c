/**
 * What the worker's gRPC server checks before a handler runs: the API key, from the call's metadata, before
 * a byte of the message is read; and the message itself, which must decode (invalid protobuf is the
 * client's INVALID_ARGUMENT, not grpc-js's INTERNAL).
 */
import * as grpc from "@grpc/grpc-js";
import { ValidationError } from "../../errors/omni-error.js";
import { toServiceError } from "../../protocol/grpc-codec.js";
import { checkApiKey } from "../shared/api-key.js";

const UNDECODABLE = Symbol("undecodable message");

interface Undecodable {
  [UNDECODABLE]: string;
}

function isUndecodable(msg: unknown): msg is Undecodable {
  return typeof msg === "object" && msg !== null && UNDECODABLE in msg;
}

/**
 * `def` with deserializers that never throw: a message that does not decode becomes a marker the
 * {@link guardInterceptor} answers with INVALID_ARGUMENT.
 */
export function tolerantService(def: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, method] of Object.entries(def)) {
    out[name] = {
      ...method,
      requestDeserialize: (buf: Buffer) => {
        try {
          return method.requestDeserialize(buf);
        } catch (err) {
          return { [UNDECODABLE]: err instanceof Error ? err.message : String(err) } satisfies Undecodable;
        }
      },
    };
  }
  return out as grpc.ServiceDefinition;
}

/**
 * A server interceptor that refuses a call whose metadata lacks the key (UNAUTHENTICATED, before the
 * message is read: grpc-js reads it only once the handler starts) and a message that did not decode
 * (INVALID_ARGUMENT). Methods in `open` (Health) need no key.
 */
export function guardInterceptor(apiKey: string | undefined, open: ReadonlySet<string>): grpc.ServerInterceptor {
  return (method, call) => {
    const needsKey = apiKey !== undefined && !open.has(method.path.slice(method.path.lastIndexOf("/") + 1));
    const guarded: grpc.ServerInterceptingCall = new grpc.ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMetadata: (md, proceed) => {
            const refusal = needsKey ? checkApiKey(md.get("authorization").map(String), apiKey!) : null;
            if (refusal) guarded.sendStatus(toServiceError(refusal) as grpc.StatusObject);
            else proceed(md);
          },
          onReceiveMessage: (msg, proceed) => {
            if (!isUndecodable(msg)) return proceed(msg);
            const err = new ValidationError(`the ${method.path} message is not valid protobuf: ${msg[UNDECODABLE]}`, { field: "message" });
            guarded.sendStatus(toServiceError(err) as grpc.StatusObject);
          },
        }),
    });
    return guarded;
  };
}
