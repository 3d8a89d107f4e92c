import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { DiffusionEngine } from "../../src/engine/engine.js";
import { parseConfig } from "../../src/core/config.js";
import { OmniDiffusionRequest } from "../../src/core/request.js";
import { UnauthorizedError, UnknownMethodError, ValidationError } from "../../src/errors/omni-error.js";
import { GrpcDiffusionExecutor } from "../../src/executors/grpc-executor.js";
import { callMetadata, createClient } from "../../src/protocol/grpc-codec.js";
import type { StepProgress } from "../../src/pipelines/types.js";
import type { WorkerServer } from "../../src/server/worker/worker-server.js";
import { runExecutorConformance } from "../../src/testing/executor-conformance.js";
import { startTestWorker } from "../helpers/worker-servers.js";

const T = 120_000;
const KEY = "grpc-test-key";

/** A raw unary call, for inputs the executor would never send. */
function rawCall(address: string, method: string, req: unknown, apiKey?: string): Promise<{ err: grpc.ServiceError | null; res: unknown }> {
  const client = createClient(address);
  return new Promise((resolve) => {
    (client as unknown as Record<string, Function>)[method]!.call(client, req, callMetadata(apiKey), { deadline: Date.now() + 10_000 }, (err: grpc.ServiceError | null, res: unknown) => {
      client.close();
      resolve({ err, res });
    });
  });
}

describe("GrpcDiffusionExecutor against a real worker server", { timeout: 10 * T }, () => {
  let server: WorkerServer;
  let address: string;
  before(async () => {
    server = await startTestWorker({ grpcPort: 0, apiKey: KEY });
    address = server.grpcAddress!;
  });
  after(async () => {
    await server?.close();
  });

  runExecutorConformance("grpc", () => ({ executorClass: "grpc", executorOptions: { endpoints: [`grpc://${address}`], apiKey: KEY } }), { expectedRanks: 1 });

  it("streams step progress to the engine (GenerateStream)", { timeout: T }, async () => {
    const engine = await DiffusionEngine.create({ executorClass: "grpc", executorOptions: { endpoints: [address], apiKey: KEY } });
    try {
      const steps: StepProgress[] = [];
      const out = await engine.generate(new OmniDiffusionRequest({ prompt: "a yellow star", width: 32, height: 32, numInferenceSteps: 3, seed: 7 }), { onProgress: (p) => steps.push(p) });
      assert.equal(out.images.length, 1);
      assert.deepEqual(steps.map((p) => p.step), [1, 2, 3]);
      assert.ok(steps.every((p) => p.totalSteps === 3 && p.requestId === out.requestId));
    } finally {
      await engine.close();
    }
  });

  it("a wrong API key is a non-retryable UnauthorizedError; Health needs no key", { timeout: T }, async () => {
    const ex = new GrpcDiffusionExecutor(parseConfig({ workerStartTimeoutMs: 5_000, executorOptions: { endpoints: [address], apiKey: "wrong", retries: 3 } }));
    await ex.init(); // Health is open, so start-up succeeds
    try {
      await assert.rejects(ex.collectiveRpc("ping"), UnauthorizedError);
      assert.equal(ex.endpointMetrics()[0]!.retries, 0, "an auth failure is not retried");
    } finally {
      await ex.close();
    }
    const { err } = await rawCall(address, "CollectiveRpc", { method: "ping" });
    assert.equal(err?.code, grpc.status.UNAUTHENTICATED);
  });

  it("answers bad input with a clear status and keeps serving", { timeout: T }, async () => {
    const unknown = await rawCall(address, "CollectiveRpc", { method: "noSuchMethod" }, KEY);
    assert.equal(unknown.err?.code, grpc.status.NOT_FOUND);
    assert.match(unknown.err!.details, /no method "noSuchMethod"/);
    const badJson = await rawCall(address, "CollectiveRpc", { method: "ping", args_json: "[1," }, KEY);
    assert.equal(badJson.err?.code, grpc.status.INVALID_ARGUMENT);
    const badName = await rawCall(address, "CollectiveRpc", { method: "../etc" }, KEY);
    assert.equal(badName.err?.code, grpc.status.INVALID_ARGUMENT);
    const huge = await rawCall(address, "Generate", { requests: [{ request_id: "h", prompt: "x", width: 100_000, height: 32 }] }, KEY);
    assert.equal(huge.err?.code, grpc.status.INVALID_ARGUMENT);
    assert.match(huge.err!.details, /requests\.0\.width/);
    const empty = await rawCall(address, "Generate", { requests: [] }, KEY);
    assert.equal(empty.err?.code, grpc.status.INVALID_ARGUMENT);
    const health = await rawCall(address, "Health", {});
    assert.equal((health.res as { ready: boolean }).ready, true);

    const ex = new GrpcDiffusionExecutor(parseConfig({ executorOptions: { endpoints: [address], apiKey: KEY } }));
    await ex.init();
    try {
      await assert.rejects(ex.collectiveRpc("noSuchMethod"), UnknownMethodError);
      await assert.rejects(ex.collectiveRpc("ping", { uniqueReplyRank: 5 }), ValidationError);
      assert.equal(ex.endpointMetrics()[0]!.state, "closed", "client errors do not open the circuit");
    } finally {
      await ex.close();
    }
  });
});
