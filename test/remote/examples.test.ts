/**
 * The quick-start's three patterns (examples/executors/), each loaded the way its header says, through
 * the header's own `executorClass: "<file>#<Export>"` string from the repository root, and driven
 * through the engine (imported as `omni-diffusion`, like the examples: in this repository, under tsx,
 * tsconfig.json's `paths` map the name to src/) against a real worker server. The SageMaker example talks to FakeSageMakerRuntime,
 * which stands in for AWS.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ClosedError, DiffusionEngine, ValidationError } from "omni-diffusion";
import { PACKAGE_ROOT } from "../../src/core/paths.js";
import type { WorkerServer } from "../../src/server/worker/worker-server.js";
import { ENDPOINT, FakeSageMakerRuntime, useTestCredentials } from "../helpers/fake-sagemaker-runtime.js";
import { startTestWorker } from "../helpers/worker-servers.js";

const T = 120_000;

/** The `executorClass` string the example's header tells a user to write (relative to the repository root). */
function example(file: string, name: string): string {
  const header = readFileSync(join(PACKAGE_ROOT, "examples", "executors", file), "utf8").split("*/")[0]!;
  const spec = /executorClass: "(\.\/[^"]+)"/.exec(header)?.[1];
  assert.equal(spec, `./examples/executors/${file}#${name}`, `${file}'s header names the file and export`);
  return spec;
}
useTestCredentials();

describe("examples/executors: the quick-start's patterns, working", { timeout: 5 * T }, () => {
  let worker: WorkerServer;
  let aws: FakeSageMakerRuntime;
  before(async () => {
    process.chdir(PACKAGE_ROOT); // where the headers' relative paths start
    worker = await startTestWorker({ httpPort: 0, grpcPort: 0, sagemakerPort: 0 });
    aws = new FakeSageMakerRuntime(() => worker.sagemakerUrl!);
    await aws.listen();
  });
  after(async () => {
    await aws?.close();
    await worker?.close();
  });

  const patterns: [string, () => { executorClass: string; executorOptions: Record<string, unknown> }][] = [
    ["Pattern 1: HTTP REST API", () => ({ executorClass: example("http-rest-executor.ts", "HttpRestExecutor"), executorOptions: { url: worker.httpUrl } })],
    ["Pattern 2: gRPC Service", () => ({ executorClass: example("grpc-executor.ts", "GrpcExecutor"), executorOptions: { address: worker.grpcAddress } })],
    ["Pattern 3: Cloud Service (SageMaker)", () => ({ executorClass: example("sagemaker-executor.ts", "AwsExecutor"), executorOptions: { endpointName: ENDPOINT, endpointUrl: aws.url } })],
  ];

  for (const [name, config] of patterns) {
    it(`${name}: generates, forwards RPCs, checks health, shuts down`, { timeout: T }, async () => {
      const engine = await DiffusionEngine.create({ ...config(), warmup: true });
      try {
        await engine.checkHealth();
        const [ok, bad] = await engine.step([
          { prompt: "an orange circle", width: 32, height: 32, numInferenceSteps: 2, seed: 5, numOutputsPerPrompt: 2 },
          { prompt: "an orange circle", width: 30, height: 32, numInferenceSteps: 2, seed: 5 },
        ]);
        assert.equal(ok!.error, null);
        assert.deepEqual(ok!.images.map((i) => [i.index, i.seed, i.width]), [[0, 5, 32], [1, 6, 32]]);
        assert.ok(bad!.error instanceof ValidationError, `ValidationError, got ${bad!.error?.name}`);
        const pings = (await engine.collectiveRpc("ping")) as { rank: number }[];
        assert.deepEqual(pings.map((p) => p.rank), [0]);
      } finally {
        await engine.close();
      }
      await assert.rejects(engine.executor.executeModel([]), ClosedError);
    });
  }
});
