/**
 * The gRPC runtime side of the worker protocol (`proto/omni_diffusion.proto`), shared by the gRPC executor
 * and the worker's gRPC server: loading the service, clients and call metadata, and carrying OmniErrors
 * across as a status plus the `omni-error` trailing metadata. Message conversions live in `proto-codec.ts`.
 */
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import {
  OmniError,
  TimeoutError,
  TransportError,
  serializeError,
  toOmniError,
  type SerializedError,
} from "../errors/omni-error.js";
import { PROTO_PATH } from "./proto-codec.js";
import { rebuildRemoteError } from "./wire.js";

/** Fully qualified service name. */
export const SERVICE_NAME = "omni_diffusion.v1.OmniDiffusion";
/**
 * Trailing metadata key carrying the OmniError behind a failed call as UTF-8 JSON. Binary (`-bin`), because
 * a text metadata value must be printable ASCII and an error message may quote any client input.
 */
export const ERROR_METADATA_KEY = "omni-error-bin";
/** The text key servers before 0.2 used (ASCII JSON only); still read by clients. */
export const LEGACY_ERROR_METADATA_KEY = "omni-error";
/** Largest message a client accepts (replies carry image batches), bytes. */
export const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

let loaded: { service: grpc.ServiceDefinition; Client: grpc.ServiceClientConstructor } | null = null;

/** The service definition (for `server.addService`) and the generated client class, loaded once. */
export function omniDiffusionService(): { service: grpc.ServiceDefinition; Client: grpc.ServiceClientConstructor } {
  if (!loaded) {
    const def = protoLoader.loadSync(PROTO_PATH, { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true });
    const pkg = grpc.loadPackageDefinition(def) as unknown as { omni_diffusion: { v1: { OmniDiffusion: grpc.ServiceClientConstructor } } };
    const Client = pkg.omni_diffusion.v1.OmniDiffusion;
    loaded = { service: Client.service, Client };
  }
  return loaded;
}

/** A client of the service at `host:port` (insecure channel: put TLS in front, e.g. a mesh sidecar). */
export function createClient(address: string): grpc.Client {
  const { Client } = omniDiffusionService();
  return new Client(address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
}

/** Call metadata carrying `authorization: Bearer <key>` when there is a key. */
export function callMetadata(apiKey: string | undefined): grpc.Metadata {
  const md = new grpc.Metadata();
  // Trimmed as the server trims keys (normalizeApiKey): HTTP/2 drops a header value with surrounding whitespace.
  if (apiKey?.trim()) md.set("authorization", `Bearer ${apiKey.trim()}`);
  return md;
}

/**
 * Channel options both sides use: message limits for image payloads, quick reconnects after a server
 * restart. grpc-js's own retries are off (the remote policy retries, with its breaker and backoff, and a
 * second layer would multiply attempts) and so is channelz, which nothing here reads: both cost per call.
 */
export const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
  "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
  "grpc.initial_reconnect_backoff_ms": 100,
  "grpc.max_reconnect_backoff_ms": 1_000,
  "grpc.keepalive_time_ms": 30_000,
  "grpc.enable_retries": 0,
  "grpc.enable_channelz": 0,
};

/** The gRPC status a server answers an OmniError with. */
export function grpcStatusFor(err: OmniError): grpc.status {
  switch (err.statusCode) {
    case 400:
    case 413:
    case 415:
      return grpc.status.INVALID_ARGUMENT;
    case 401:
      return grpc.status.UNAUTHENTICATED;
    case 404:
      return grpc.status.NOT_FOUND;
    case 409:
      return grpc.status.ALREADY_EXISTS;
    case 429:
      return grpc.status.RESOURCE_EXHAUSTED;
    case 499:
      return grpc.status.CANCELLED;
    case 503:
      return grpc.status.UNAVAILABLE;
    case 504:
      return grpc.status.DEADLINE_EXCEEDED;
    default:
      return grpc.status.INTERNAL;
  }
}

/**
 * A server-side failure as what grpc-js sends: status, message and the `omni-error-bin` metadata. Never
 * throws, whatever the error holds (non-ASCII text, data that does not serialize).
 */
export function toServiceError(err: unknown): Partial<grpc.StatusObject> {
  const e = toOmniError(err);
  const metadata = new grpc.Metadata();
  let json: string;
  try {
    json = JSON.stringify(serializeError(e));
  } catch {
    json = JSON.stringify({ name: e.name, code: e.code, message: e.message });
  }
  metadata.set(ERROR_METADATA_KEY, Buffer.from(json, "utf8"));
  return { code: grpcStatusFor(e), details: e.message, metadata };
}

const RETRYABLE_STATUS = new Set([grpc.status.UNAVAILABLE, grpc.status.RESOURCE_EXHAUSTED, grpc.status.ABORTED, grpc.status.INTERNAL, grpc.status.UNKNOWN]);

/**
 * A failed client call back to an OmniError: the server's own error when it sent one (made retryable
 * when the status is), else one built from the status: UNAVAILABLE (refused, reset, server gone) and
 * RESOURCE_EXHAUSTED are retryable TransportErrors, DEADLINE_EXCEEDED is a TimeoutError.
 */
export function errorFromGrpc(err: grpc.ServiceError, endpoint: string): OmniError {
  const bin = err.metadata?.get(ERROR_METADATA_KEY)[0];
  const raw = Buffer.isBuffer(bin) ? bin.toString("utf8") : err.metadata?.get(LEGACY_ERROR_METADATA_KEY)[0];
  const data = { endpoint, grpcStatus: err.code };
  const retryable = RETRYABLE_STATUS.has(err.code);
  if (typeof raw === "string") {
    let parsed: SerializedError | null = null;
    try {
      parsed = JSON.parse(raw) as SerializedError;
    } catch {
      // A proxy mangled it: fall through to the status.
    }
    if (parsed) return rebuildRemoteError(parsed, retryable, endpoint, data);
  }
  if (err.code === grpc.status.DEADLINE_EXCEEDED) return new TimeoutError(`${endpoint}: deadline exceeded`, { cause: err, data });
  return new TransportError(`${endpoint}: gRPC ${grpc.status[err.code] ?? err.code}: ${err.details || err.message}`, { cause: err, data, retryable });
}
