/**
 * Every value exported from src/index.ts, called the minimal way its docs show, with its documented
 * defaults. The table is typed `Record<keyof typeof api, ...>`, so a new export does not compile until it
 * gets an entry here; an export whose minimal call needs an argument says why in `needs`.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import Database from "better-sqlite3";
import * as api from "../../src/index.js";

interface Check {
  /** Why the minimal call takes an argument (or is not a call), when it does. */
  needs?: string;
  run: () => unknown;
}

const T = 180_000;
const closers: (() => Promise<unknown>)[] = [];
/** Registers a close for the end, so a failed assertion does not leave processes or sockets behind. */
const closing = <C extends { close(): Promise<unknown> }>(c: C): C => (closers.push(() => c.close()), c);

/** A minimal executor: the four methods the docs say a subclass must implement. */
class MinimalExecutor extends api.DiffusionExecutor {
  protected async initExecutor(): Promise<void> {}
  async collectiveRpc(): Promise<unknown> {
    this.assertOpen();
    return [{ rank: 0 }];
  }
  async checkHealth(): Promise<void> {
    this.assertOpen();
  }
  protected async shutdown(): Promise<void> {}
}

/** A ModelLimits as a worker's describeModel reports it. */
const TINY_LIMITS: api.ModelLimits = { nativeWidth: 32, nativeHeight: 32, spatial: "dynamic", sizeMultiple: 8, predictionType: "epsilon", schedulers: ["ddim"], bytesPerRowAtNative: 1_000_000 };

const isOmniError = (code: string) => (err: unknown) => err instanceof api.OmniError && err.code === code;
const errorClass = (Cls: new (message: string) => api.OmniError): Check => ({
  run: () => {
    const err = new Cls("something failed");
    assert.ok(err instanceof api.OmniError);
    assert.ok(api.ERROR_CODES.includes(err.code as never), err.code);
    assert.equal(api.deserializeError(api.serializeError(err)).code, err.code, "its code survives a process boundary");
  },
});
const remoteExecutor = (Cls: new (c: api.OmniDiffusionConfig) => api.DiffusionExecutor, name: string, required: string, options: Record<string, unknown>): Check => ({
  needs: `executorOptions.${required}: where the remote backend is (no default can guess it)`,
  run: async () => {
    assert.throws(() => new Cls(api.parseConfig({ executorClass: name })), (err: unknown) => {
      assert.ok(err instanceof api.ConfigError, String(err));
      assert.equal(err.data.field, `executorOptions.${required}`);
      return true;
    });
    const executor = new Cls(api.parseConfig({ executorClass: name, executorOptions: options }));
    assert.ok(executor instanceof api.RemoteExecutor);
    await executor.close();
  },
});
const localExecutor = (Cls: new (c: api.OmniDiffusionConfig) => api.DiffusionExecutor): Check => ({
  needs: "its OmniDiffusionConfig: parseConfig() with no arguments gives every default",
  run: async () => {
    const executor = closing(new Cls(api.parseConfig()));
    await executor.init();
    const replies = (await executor.collectiveRpc("ping")) as { rank: number }[];
    assert.deepEqual(replies.map((r) => r.rank), [0]);
    await executor.close();
  },
});

const MINIMAL: Record<keyof typeof api, Check> = {
  // Values.
  BATCHING_POLICIES: { run: () => assert.ok(api.BATCHING_POLICIES.includes(api.parseConfig().batching)) },
  DEFAULT_MODEL_DIR: { run: () => assert.ok(existsSync(join(api.DEFAULT_MODEL_DIR, "model_index.json"))) },
  DEVICES: { run: () => assert.ok(api.DEVICES.includes(api.parseConfig().device)) },
  PROTO_PATH: { run: () => assert.ok(existsSync(api.PROTO_PATH)) },
  SAGEMAKER_INVOCATION_LIMIT_MS: { run: () => assert.equal(api.SAGEMAKER_INVOCATION_LIMIT_MS, 60_000) },
  SAGEMAKER_PAYLOAD_LIMIT_BYTES: { run: () => assert.equal(api.SAGEMAKER_PAYLOAD_LIMIT_BYTES, 6 * 1024 * 1024) },
  SCHEDULER_NAMES: { run: () => api.SCHEDULER_NAMES.forEach((n) => assert.equal(typeof api.createScheduler(n, null).step, "function")) },
  TIMEOUT_HEADER: { run: () => assert.match(api.TIMEOUT_HEADER, /^x-/) },
  WIRE_PATHS: { run: () => Object.values(api.WIRE_PATHS).forEach((p) => assert.match(String(p), /^\//)) },
  ERROR_CODES: { run: () => assert.ok(api.ERROR_CODES.every((c) => c.startsWith("OMNI_ERR_"))) },
  configSchema: { run: () => api.configSchema.parse({}) },
  serverConfigSchema: { run: () => api.serverConfigSchema.parse({}) },
  serverLimitsSchema: { run: () => api.serverLimitsSchema.parse({}) },

  // Engine, requests and outputs.
  DiffusionEngine: {
    run: async () => {
      const engine = closing(await api.DiffusionEngine.create());
      const out = await engine.generate({ prompt: "a red circle on a blue background", seed: 1 });
      assert.equal(out.images.length, 1);
      assert.ok(out.pngs()[0]!.length > 0);
      await engine.close();
    },
  },
  parseConfig: { run: () => assert.equal(api.parseConfig().numGpus, 1) },
  resolveModelSpec: { needs: "the model spec", run: () => assert.ok(existsSync(join(api.resolveModelSpec("tiny-shapes"), "model_index.json"))) },
  pullModel: {
    needs: "a Hugging Face id and the network (none here: test/hub/ pulls from a fake Hub); a bad id fails before any request",
    run: async () => await assert.rejects(api.pullModel("not a valid id"), isOmniError("OMNI_ERR_VALIDATION")),
  },
  OmniDiffusionRequest: { needs: "a prompt", run: () => assert.ok(new api.OmniDiffusionRequest({ prompt: "a red circle" }).requestId) },
  newRequestId: { run: () => assert.notEqual(api.newRequestId(), api.newRequestId()) },
  DiffusionOutput: { run: () => assert.deepEqual(api.DiffusionOutput.fromDict(new api.DiffusionOutput().toDict()).output, []) },
  OmniRequestOutput: { needs: "the request id and prompt it answers", run: () => assert.equal(new api.OmniRequestOutput({ requestId: "r", prompt: "p" }).error, null) },

  // Executors.
  DiffusionExecutor: {
    needs: "a subclass (it is abstract) and its config",
    run: async () => {
      const e = new MinimalExecutor(api.parseConfig());
      await e.init();
      await e.checkHealth();
      await e.close();
      await assert.rejects(e.checkHealth(), api.ClosedError);
    },
  },
  UniprocExecutor: localExecutor(api.UniprocExecutor),
  MultiprocExecutor: localExecutor(api.MultiprocExecutor),
  resolveExecutor: { needs: "the executorClass value (undefined is the documented default)", run: async () => assert.equal(await api.resolveExecutor(undefined), api.MultiprocExecutor) },
  builtinExecutorNames: { run: () => assert.ok(api.builtinExecutorNames().includes("uniproc")) },
  registeredExecutors: { run: () => assert.ok(api.registeredExecutors().includes("mp")) },
  registerExecutor: {
    needs: "a name and a loader",
    run: async () => {
      api.registerExecutor("public-api-test", async () => MinimalExecutor);
      assert.equal(await api.resolveExecutor("public-api-test"), MinimalExecutor);
    },
  },
  HttpDiffusionExecutor: remoteExecutor(api.HttpDiffusionExecutor, "http", "endpoints", { endpoints: ["http://127.0.0.1:1"] }),
  GrpcDiffusionExecutor: remoteExecutor(api.GrpcDiffusionExecutor, "grpc", "endpoints", { endpoints: ["127.0.0.1:1"] }),
  OpenAIImagesExecutor: remoteExecutor(api.OpenAIImagesExecutor, "openai", "endpoints", { endpoints: ["http://127.0.0.1:1"] }),
  SageMakerDiffusionExecutor: remoteExecutor(api.SageMakerDiffusionExecutor, "sagemaker", "endpointName", { endpointName: "e", region: "eu-west-1" }),
  QueueDiffusionExecutor: {
    needs: "executorOptions.url: where the Redis queue is (no default can guess it)",
    run: async () => {
      assert.throws(() => new api.QueueDiffusionExecutor(api.parseConfig({ executorClass: "queue" })), (err: unknown) => {
        assert.ok(err instanceof api.ConfigError, String(err));
        assert.equal(err.data.field, "executorOptions.url");
        return true;
      });
      const executor = new api.QueueDiffusionExecutor(api.parseConfig({ executorClass: "queue", executorOptions: { url: "redis://127.0.0.1:1/0" } }));
      assert.equal(api.QueueDiffusionExecutor.isRemote, true);
      await executor.close();
    },
  },
  QUEUE_METRICS: {
    needs: "nothing: a table of metric names",
    run: () => assert.equal(api.QUEUE_METRICS.jobs, "omni_queue_jobs"),
  },
  RemoteExecutor: {
    needs: "nothing: it is the abstract base of the remote executors, constructed through them",
    run: () => assert.ok(api.HttpDiffusionExecutor.prototype instanceof api.RemoteExecutor),
  },

  // Wire codecs.
  requestToProto: {
    needs: "a request dict",
    run: () => {
      const req = new api.OmniDiffusionRequest({ prompt: "a red circle", seed: 3 });
      assert.equal(api.OmniDiffusionRequest.fromDict(api.requestFromProto(api.requestToProto(req.toDict()))).seed, 3);
    },
  },
  requestFromProto: { needs: "a proto message (round trip above)", run: () => assert.equal(typeof api.requestFromProto, "function") },
  outputToProto: { needs: "an output", run: () => assert.deepEqual(api.outputFromProto(api.outputToProto(new api.DiffusionOutput())).output, []) },
  outputFromProto: { needs: "a proto message (round trip above)", run: () => assert.equal(typeof api.outputFromProto, "function") },

  // Workers, pipelines and schedulers.
  DiffusionWorker: {
    needs: "its rank, model folder and load options ({} takes the defaults)",
    run: async () => {
      const worker = closing(await api.DiffusionWorker.create({ rank: 0, modelDir: api.DEFAULT_MODEL_DIR, load: {} }));
      assert.equal(((await worker.call("ping", [], {})) as { rank: number }).rank, 0);
      await worker.close();
    },
  },
  loadPipeline: {
    needs: "the model folder",
    run: async () => {
      const pipeline = await api.loadPipeline(api.DEFAULT_MODEL_DIR);
      try {
        assert.ok(pipeline instanceof api.OnnxDiffusionPipeline);
        assert.ok(api.isSteppable(pipeline));
        const out = await pipeline.generate([new api.OmniDiffusionRequest({ prompt: "a red circle", numInferenceSteps: 2, seed: 1 })]);
        assert.equal(out.output.length, 1);
      } finally {
        await pipeline.release();
      }
    },
  },
  OnnxDiffusionPipeline: {
    needs: "nothing: created by loadPipeline (see loadPipeline's check), registered under its _class_name",
    run: () => assert.ok(api.registeredPipelines().includes("OmniTinyShapesPipeline")),
  },
  SdxlEnsemblePipeline: {
    needs: "nothing: created by loadPipeline for a folder whose model_index.json names an SDXL base and refiner (docs/models.md#sdxl)",
    run: () => assert.ok(api.registeredPipelines().includes("OmniSdxlEnsemblePipeline")),
  },
  UnetProfile: {
    run: () => {
      const profile = new api.UnetProfile();
      assert.equal(profile.estimate("512x512", 1), null, "a fresh profile knows no size");
      profile.observe("512x512", 1, 10);
      assert.equal(profile.estimate("512x512", 2), 20);
    },
  },
  isSteppable: { needs: "a pipeline (see loadPipeline's check)", run: () => assert.equal(api.isSteppable({} as never), false) },
  registeredPipelines: { run: () => assert.ok(api.registeredPipelines().length >= 1) },
  registerPipeline: {
    needs: "a class name and a factory",
    run: async () => {
      let called = false;
      api.registerPipeline("PublicApiTestPipeline", async () => ((called = true), { release: async () => {} }) as never);
      await api.loadPipeline(api.DEFAULT_MODEL_DIR, { modelClassName: "PublicApiTestPipeline" });
      assert.ok(called);
    },
  },
  createScheduler: {
    needs: "a sampler name, or a scheduler_config.json with _class_name",
    run: () => {
      assert.equal(typeof api.createScheduler("ddim", null).step, "function");
      assert.throws(() => api.createScheduler(null, null), (e: unknown) => e instanceof api.ValidationError && /pass one of/.test(e.message));
    },
  },
  encodePng: {
    needs: "an image",
    run: () => {
      const img = { width: 2, height: 1, data: new Uint8Array([255, 0, 0, 0, 0, 255]) };
      assert.deepEqual([...api.decodePng(api.encodePng(img)).data], [...img.data]);
    },
  },
  decodePng: { needs: "PNG bytes (round trip above)", run: () => assert.throws(() => api.decodePng(Buffer.from("not a png"))) },

  // Servers.
  startServer: {
    needs: "port 0 and logger false in a test (the default port 8000 may be taken; the default logger prints)",
    run: async () => {
      const server = closing(await api.startServer({ port: 0, logger: false }));
      const res = await fetch(`${server.url}/health`);
      assert.equal(res.status, 200);
      await server.close();
    },
  },
  OmniServer: {
    needs: "nothing beyond startServer's: startServer is OmniServer.create + listen",
    run: async () => {
      const server = closing(await api.OmniServer.create({ logger: false }));
      await server.close();
    },
  },
  startWorkerServer: {
    needs: "at least one port (it serves HTTP, gRPC and/or SageMaker; none is on by default)",
    run: async () => {
      await assert.rejects(api.startWorkerServer(), isOmniError("OMNI_ERR_CONFIG"));
      const server = closing(await api.startWorkerServer({ httpPort: 0 }));
      await server.ready;
      assert.equal((await fetch(`${server.httpUrl}/health`)).status, 200);
      await server.close();
    },
  },
  startQueueWorker: {
    needs: "url: the Redis queue to pull from (the fleet tests in test/fleet run it against a real redis-server)",
    run: async () => {
      await assert.rejects(api.startQueueWorker({ url: "http://127.0.0.1:1" }), isOmniError("OMNI_ERR_CONFIG"));
    },
  },
  ServerMetrics: {
    needs: "the engine it reports on",
    run: async () => {
      const engine = closing(await api.DiffusionEngine.create({ executorClass: "uniproc" }));
      const metrics = new api.ServerMetrics(engine, { defaultMetrics: false });
      assert.equal(typeof metrics, "object");
      await engine.close();
    },
  },

  // Request limits.
  DEFAULT_REQUEST_LIMITS: { run: () => assert.equal(api.DEFAULT_REQUEST_LIMITS.maxSteps, api.parseConfig().limits.maxSteps) },
  checkRequestLimits: {
    needs: "the request and the limits to check it against",
    run: () => {
      api.checkRequestLimits({ prompt: "a red circle" }, { ...api.DEFAULT_REQUEST_LIMITS });
      assert.throws(() => api.checkRequestLimits({ prompt: "a red circle", numInferenceSteps: 100_000 }, { ...api.DEFAULT_REQUEST_LIMITS }), api.LimitExceededError);
    },
  },
  camelCaseFields: { needs: "a field name", run: () => assert.equal(api.camelCaseFields("numInferenceSteps"), "numInferenceSteps") },
  snakeCaseFields: { needs: "a field name", run: () => assert.equal(api.snakeCaseFields("numInferenceSteps"), "num_inference_steps") },
  prefixedFields: { needs: "the prefix", run: () => assert.match(api.prefixedFields("requests.2")("numInferenceSteps"), /^requests\.2.*num_inference_steps$/) },
  parseModelLimits: {
    needs: "a describeModel reply",
    run: () => {
      assert.equal(api.parseModelLimits(TINY_LIMITS).nativeWidth, 32);
      assert.throws(() => api.parseModelLimits({ ...TINY_LIMITS, extra: 1 }), api.ValidationError);
    },
  },
  estimateRequestBytes: { needs: "the model's limits, a size and a row count", run: () => assert.ok(api.estimateRequestBytes(TINY_LIMITS, 64, 64, 2) > api.estimateRequestBytes(TINY_LIMITS, 32, 32, 2)) },
  schedulersFor: { needs: "a prediction type", run: () => assert.ok(api.schedulersFor("epsilon").includes("ddim")) },

  // Errors.
  OmniError: errorClass(api.OmniError),
  LimitExceededError: errorClass(api.LimitExceededError),
  HubAuthError: errorClass(api.HubAuthError),
  HubNotFoundError: errorClass(api.HubNotFoundError),
  ModelLayoutError: errorClass(api.ModelLayoutError),
  IntegrityError: errorClass(api.IntegrityError),
  ResourceExhaustedError: errorClass(api.ResourceExhaustedError),
  ValidationError: errorClass(api.ValidationError),
  ConfigError: errorClass(api.ConfigError),
  ExecutorResolutionError: errorClass(api.ExecutorResolutionError),
  ExecutorTypeError: errorClass(api.ExecutorTypeError),
  ModelLoadError: errorClass(api.ModelLoadError),
  TimeoutError: errorClass(api.TimeoutError),
  WorkerError: errorClass(api.WorkerError),
  WorkerDiedError: errorClass(api.WorkerDiedError),
  ClosedError: errorClass(api.ClosedError),
  AbortedError: errorClass(api.AbortedError),
  UnhealthyError: errorClass(api.UnhealthyError),
  QueueFullError: errorClass(api.QueueFullError),
  TransportError: errorClass(api.TransportError),
  UnauthorizedError: errorClass(api.UnauthorizedError),
  PermissionError: errorClass(api.PermissionError),
  NotFoundError: errorClass(api.NotFoundError),
  UnknownMethodError: errorClass(api.UnknownMethodError),
  serializeError: { needs: "an error", run: () => assert.equal(api.serializeError(new Error("x")).message, "x") },
  deserializeError: {
    needs: "a serialized error",
    run: () => assert.ok(api.deserializeError({ name: "X", code: "OMNI_ERR_INTERNAL", message: "x" }) instanceof api.OmniError),
  },
  toOmniError: { needs: "an error", run: () => assert.ok(api.toOmniError(new Error("x")) instanceof api.OmniError) },

  // Webhooks of the predictions API.
  SqliteWebhookDispatcher: {
    needs: "the better-sqlite3 Database to keep its deliveries in",
    run: async () => {
      const d = new api.SqliteWebhookDispatcher({ db: new Database(":memory:") });
      assert.match(d.secret, /^whsec_/);
      assert.deepEqual(d.deliveries("none"), []);
      await d.close();
    },
  },
  webhookOptionsFromFlags: { needs: "the parsed flags ({} takes the defaults)", run: () => assert.deepEqual(api.webhookOptionsFromFlags({}), { allowPrivate: false }) },
  weightsKey: { needs: "a model name and its LoRAs", run: () => assert.equal(api.weightsKey("m", [{ name: "b", scale: 1 }, { name: "a", scale: 0.5 }]), "m+a:0.5+b:1") },
  LoraCatalog: { needs: "a LoRA folder", run: () => assert.ok(new api.LoraCatalog("test/fixtures/loras").list().some((l) => l.name === "style-kohya")) },
  loraResolver: { needs: "a LoRA folder", run: () => assert.match(api.loraResolver("test/fixtures/loras")("style-peft"), /style-peft\.safetensors$/) },
  extractLoraTags: { needs: "a prompt", run: () => assert.deepEqual(api.extractLoraTags("a cat <lora:ink:0.5>"), { prompt: "a cat", loras: [{ name: "ink", scale: 0.5 }] }) },
};

describe("the public API with its documented defaults", { timeout: 10 * T }, () => {
  after(async () => {
    for (const close of closers) await close().catch(() => {});
  });

  it("every export has a minimal call here, and nothing here is not exported", () => {
    assert.deepEqual(Object.keys(MINIMAL).sort(), Object.keys(api).sort());
  });

  for (const [name, check] of Object.entries(MINIMAL)) {
    it(`${name}${check.needs ? ` (needs ${check.needs})` : ""}`, { timeout: T }, async () => {
      await check.run();
    });
  }
});
