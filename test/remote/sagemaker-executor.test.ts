/**
 * SageMakerDiffusionExecutor against a local server that speaks the SageMaker runtime wire protocol.
 *
 * FakeSageMakerRuntime (test/helpers/fake-sagemaker-runtime.ts) STANDS IN FOR AWS: it answers
 * `POST /endpoints/{name}/invocations` like the SageMaker runtime (checking each request carries a SigV4
 * `Authorization` header), forwards to the worker's `/invocations` like SageMaker forwards to a container,
 * and injects throttling, model errors and delays. Credentials come from the standard AWS chain
 * (environment variables set here).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { parseConfig, type OmniDiffusionConfigInput } from "../../src/core/config.js";
import { OmniDiffusionRequest } from "../../src/core/request.js";
import { ConfigError, TimeoutError, ValidationError } from "../../src/errors/omni-error.js";
import { SAGEMAKER_PAYLOAD_LIMIT_BYTES, SageMakerDiffusionExecutor } from "../../src/executors/sagemaker-executor.js";
import type { RetryEvent } from "../../src/policies/remote-policy.js";
import type { WorkerServer } from "../../src/server/worker/worker-server.js";
import { runExecutorConformance } from "../../src/testing/executor-conformance.js";
import { ENDPOINT, FakeSageMakerRuntime, useTestCredentials } from "../helpers/fake-sagemaker-runtime.js";
import { startTestWorker } from "../helpers/worker-servers.js";

const T = 120_000;
useTestCredentials();

const req = (i: number, extra: Partial<ConstructorParameters<typeof OmniDiffusionRequest>[0]> = {}) =>
  new OmniDiffusionRequest({ prompt: `a purple cross ${i}`, width: 32, height: 32, numInferenceSteps: 2, seed: i, ...extra });

describe("SageMakerDiffusionExecutor against a stand-in for the SageMaker runtime", { timeout: 10 * T }, () => {
  let worker: WorkerServer;
  let aws: FakeSageMakerRuntime;
  const config = (extra: Record<string, unknown> = {}): OmniDiffusionConfigInput => ({
    executorClass: "sagemaker",
    executorOptions: { endpointName: ENDPOINT, endpointUrl: aws.url, targetVariant: "AllTraffic", backoffInitialMs: 1, ...extra },
  });
  const started = async (extra: Record<string, unknown> = {}) => {
    const ex = new SageMakerDiffusionExecutor(parseConfig(config(extra)));
    await ex.init();
    return ex;
  };

  before(async () => {
    worker = await startTestWorker({ sagemakerPort: 0 });
    aws = new FakeSageMakerRuntime(() => worker.sagemakerUrl!);
    await aws.listen();
  });
  after(async () => {
    await aws?.close();
    await worker?.close();
  });

  runExecutorConformance("sagemaker", () => config(), { expectedRanks: 1 });

  it("signs every invocation (SigV4) and passes the deadline and target variant through", { timeout: T }, () => {
    assert.ok(aws.invocations.length > 0);
    for (const inv of aws.invocations) {
      assert.match(inv.authorization, /^AWS4-HMAC-SHA256 Credential=AKIDOMNITEST\/\d{8}\/us-east-1\/sagemaker\/aws4_request, SignedHeaders=.*, Signature=[0-9a-f]{64}$/);
      assert.match(inv.amzDate, /^\d{8}T\d{6}Z$/);
      assert.match(inv.attributes, /^timeout_ms=\d+$/);
      assert.equal(inv.variant, "AllTraffic");
    }
  });

  it("splits a batch into invocations of at most maxBatchSize requests", { timeout: T }, async () => {
    const ex = await started({ maxBatchSize: 2 });
    try {
      const before = aws.invocations.length;
      const requests = [1, 2, 3, 4, 5].map((i) => req(i));
      const out = await ex.executeModel(requests);
      assert.equal(aws.invocations.length - before, 3);
      for (const r of requests) assert.equal(out.imagesFor(r.requestId).length, 1);
    } finally {
      await ex.close();
    }
  });

  it("keeps each invocation under 6 MB, and refuses a request too big alone without invoking", { timeout: T }, async () => {
    class Probe extends SageMakerDiffusionExecutor {
      plan(requests: OmniDiffusionRequest[]) {
        return this.planBatches(requests);
      }
    }
    const probe = new Probe(parseConfig(config({ maxBatchSize: 100 })));
    const big = Array.from({ length: 10 }, (_, i) => req(i, { width: 512, height: 512 }));
    const plan = probe.plan(big);
    assert.equal(plan.batches.length, 2, "about 1 MB worst case per 512x512 image: five per invocation");
    assert.deepEqual(plan.batches.map((b) => b.length), [5, 5]);
    const tooBig = req(99, { width: 1024, height: 1024, numOutputsPerPrompt: 10 });
    assert.ok(probe.plan([tooBig]).rejected[tooBig.requestId] instanceof ValidationError);

    const ex = await started();
    try {
      const before = aws.invocations.length;
      const small = req(7);
      const out = await ex.executeModel([small, tooBig]);
      assert.equal(out.imagesFor(small.requestId).length, 1);
      const err = out.errors[tooBig.requestId];
      assert.ok(err instanceof ValidationError);
      assert.match(err.message, /6 MB payload limit/);
      assert.equal(aws.invocations.length - before, 1, "only the small request was sent");
      assert.ok(aws.invocations.every((i) => i.bytes < SAGEMAKER_PAYLOAD_LIMIT_BYTES));
    } finally {
      await ex.close();
    }
  });

  it("caps each invocation at the 60 s limit (here lowered) with an error that names it", { timeout: T }, async () => {
    assert.throws(() => new SageMakerDiffusionExecutor(parseConfig(config({ invocationTimeoutMs: 61_000 }))), ConfigError);
    const ex = await started({ invocationTimeoutMs: 300 });
    try {
      aws.faults.push({ delayMs: 1_500 });
      const r = req(8);
      const out = await ex.executeModel([r]);
      const err = out.errors[r.requestId];
      assert.ok(err instanceof TimeoutError, `TimeoutError, got ${err?.name}: ${err?.message}`);
      assert.match(err.message, /a SageMaker invocation may run at most 300ms/);
    } finally {
      await ex.close();
    }
  });

  it("retries throttling and a ModelError from a failing container; not a ModelError for a bad request", { timeout: T }, async () => {
    const ex = await started({ retries: 3 });
    const retries: RetryEvent[] = [];
    ex.onRetry((e) => retries.push(e));
    try {
      aws.faults.push("throttle", "model-error-500");
      const before = aws.invocations.length;
      const r = req(9);
      const out = await ex.executeModel([r]);
      assert.equal(out.imagesFor(r.requestId).length, 1, "succeeds on the third invocation");
      assert.equal(aws.invocations.length - before, 3);
      assert.deepEqual(retries.map((e) => e.error.name), ["QueueFullError", "TransportError"]);
      assert.equal(retries[1]!.error.data.awsError, "ModelError");

      aws.faults.push("model-error-400");
      const bad = req(10);
      const failed = await ex.executeModel([bad]);
      assert.ok(failed.errors[bad.requestId] instanceof ValidationError);
      assert.equal(retries.length, 2, "a container 4xx is not retried");
    } finally {
      await ex.close();
    }
  });
});
