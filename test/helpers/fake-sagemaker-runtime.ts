/**
 * A STAND-IN FOR AWS: a local server speaking the SageMaker runtime wire protocol. It answers
 * `POST /endpoints/{name}/invocations` the way the SageMaker runtime does (checking that each request
 * carries a SigV4 `Authorization` header, not verifying the signature), forwards the body to a container's
 * `/invocations` like SageMaker forwards to a model container, wraps a container failure in a 424
 * `ModelError`, and can inject throttling, model errors and delays.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { setTimeout as delay } from "node:timers/promises";

/** The SageMaker endpoint name the stand-in serves. */
export const ENDPOINT = "omni-diffusion-test";

/** Sets the standard AWS chain's environment variables to test credentials. */
export function useTestCredentials(): void {
  process.env.AWS_ACCESS_KEY_ID = "AKIDOMNITEST";
  process.env.AWS_SECRET_ACCESS_KEY = "omni-test-secret";
  process.env.AWS_REGION = "us-east-1";
  process.env.AWS_EC2_METADATA_DISABLED = "true";
}

export type Fault = "throttle" | "model-error-500" | "model-error-400" | { delayMs: number };

/** The stand-in for the SageMaker runtime service. */
export class FakeSageMakerRuntime {
  readonly invocations: { authorization: string; amzDate: string; attributes: string; variant: string; bytes: number }[] = [];
  readonly faults: Fault[] = [];
  #server: Server;
  url = "";

  constructor(private readonly container: () => string) {
    this.#server = createServer((req, res) => {
      this.#handle(req, res).catch((err: unknown) => {
        // The client gave up (a deadline test) or the container is gone (teardown): nobody is waiting.
        if (!res.headersSent && !res.destroyed) res.writeHead(500).end(String(err));
      });
    });
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  close(): Promise<void> {
    this.#server.closeAllConnections();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    const awsError = (status: number, type: string, payload: Record<string, unknown>) => {
      res.writeHead(status, { "content-type": "application/json", "x-amzn-errortype": type, "x-amzn-requestid": "test" });
      res.end(JSON.stringify(payload));
    };
    const m = /^\/endpoints\/([^/]+)\/invocations$/.exec(req.url ?? "");
    if (req.method !== "POST" || !m) return awsError(404, "UnknownOperationException", { message: "unknown operation" });
    const authorization = String(req.headers.authorization ?? "");
    if (!authorization.startsWith("AWS4-HMAC-SHA256 Credential=")) return awsError(403, "MissingAuthenticationTokenException", { message: "Missing Authentication Token" });
    if (decodeURIComponent(m[1]!) !== ENDPOINT) return awsError(400, "ValidationError", { message: `Endpoint ${m[1]} not found.` });
    this.invocations.push({
      authorization,
      amzDate: String(req.headers["x-amz-date"] ?? ""),
      attributes: String(req.headers["x-amzn-sagemaker-custom-attributes"] ?? ""),
      variant: String(req.headers["x-amzn-sagemaker-target-variant"] ?? ""),
      bytes: body.byteLength,
    });
    const fault = this.faults.shift();
    if (fault === "throttle") return awsError(400, "ThrottlingException", { message: "Rate exceeded" });
    if (fault === "model-error-500" || fault === "model-error-400") {
      const status = fault === "model-error-500" ? 500 : 400;
      const original = JSON.stringify({ error: { name: status === 500 ? "OmniError" : "ValidationError", code: status === 500 ? "OMNI_ERR_INTERNAL" : "OMNI_ERR_VALIDATION", message: "injected", data: {} } });
      return awsError(424, "ModelError", { Message: `Received server error (${status}) from primary`, OriginalStatusCode: status, OriginalMessage: original, LogStreamArn: "arn:test" });
    }
    if (fault && typeof fault === "object") await delay(fault.delayMs);
    // Forward to the container, as SageMaker does (custom attributes pass through).
    const upstream = await fetch(`${this.container()}/invocations`, {
      method: "POST",
      headers: { "content-type": String(req.headers["content-type"]), "x-amzn-sagemaker-custom-attributes": String(req.headers["x-amzn-sagemaker-custom-attributes"] ?? "") },
      body,
    });
    const text = await upstream.text();
    if (!upstream.ok) return awsError(424, "ModelError", { Message: `Received client error (${upstream.status}) from primary`, OriginalStatusCode: upstream.status, OriginalMessage: text });
    if (!res.writableEnded && !res.destroyed) {
      res.writeHead(200, { "content-type": "application/json", "x-amzn-invoked-production-variant": "AllTraffic" });
      res.end(text);
    }
  }
}

