// Public API of omni-diffusion. Only re-exports live here.
export { DiffusionEngine, type BatchEvent, type EngineGenerateOptions, type EngineStats, type StepEvent } from "./engine/engine.js";
export { parseConfig, configSchema, BATCHING_POLICIES, type BatchingPolicy, type OmniDiffusionConfig, type OmniDiffusionConfigInput } from "./core/config.js";
export { checkRequestLimits, camelCaseFields, snakeCaseFields, prefixedFields, estimateRequestBytes, DEFAULT_REQUEST_LIMITS, type RequestLimits, type LimitedRequest, type FieldNamer } from "./core/limits.js";
export { parseModelLimits, type ModelLimits, type ModelMemory } from "./core/model-limits.js";
export type { PreviewDecoder, VaeChoice } from "./core/decoders.js";
export { OmniDiffusionRequest, newRequestId, type OmniDiffusionRequestInit, type OmniDiffusionRequestDict } from "./core/request.js";
export {
  DiffusionOutput,
  type DiffusionOutputDict,
  type DiffusionOutputInit,
  type GeneratedImage,
  type StageMetrics,
  type TrajectoryLatents,
  type TrajectoryTimesteps,
} from "./core/output.js";
export { OmniRequestOutput } from "./core/request-output.js";
export { DEFAULT_MODEL_DIR } from "./core/paths.js";
export { resolveModelSpec, type ModelSpecOptions } from "./core/model-path.js";
export { pullModel, type PullOptions, type PullProgress, type PullResult } from "./hub/pull-model.js";
export {
  DiffusionExecutor,
  type CollectiveRpcOptions,
  type DiffusionExecutorClass,
  type EndpointState,
  type ExecuteOptions,
  type FailureCallback,
} from "./executors/base.js";
export { UniprocExecutor } from "./executors/uniproc-executor.js";
export { MultiprocExecutor } from "./executors/multiproc-executor.js";
export { resolveExecutor, builtinExecutorNames, type ExecutorSpec } from "./executors/resolve-executor.js";
export { registerExecutor, registeredExecutors, type ExecutorLoader } from "./executors/executor-registry.js";
export { ExecutorTypeError } from "./executors/executor-type-error.js";
export { HttpDiffusionExecutor } from "./executors/http-executor.js";
export { GrpcDiffusionExecutor } from "./executors/grpc-executor.js";
export { SageMakerDiffusionExecutor, SAGEMAKER_INVOCATION_LIMIT_MS, SAGEMAKER_PAYLOAD_LIMIT_BYTES } from "./executors/sagemaker-executor.js";
export { OpenAIImagesExecutor } from "./executors/openai-executor.js";
export { QueueDiffusionExecutor } from "./executors/queue-executor.js";
export { QUEUE_METRICS, type QueueStats } from "./protocol/queue-protocol.js";
export { RemoteExecutor, type BatchPlan } from "./executors/shared/remote-executor.js";
export type { CircuitStateName, EndpointMetrics } from "./policies/endpoint-pool.js";
export type { RetryEvent } from "./policies/remote-policy.js";
export { PATHS as WIRE_PATHS, TIMEOUT_HEADER } from "./protocol/wire.js";
export {
  PROTO_PATH,
  outputFromProto,
  outputToProto,
  requestFromProto,
  requestToProto,
  type ProtoGenerateReply,
  type ProtoOutput,
  type ProtoRequest,
} from "./protocol/proto-codec.js";
export { startWorkerServer, type WorkerServer, type WorkerServerOptions } from "./server/worker/worker-server.js";
export { startQueueWorker, type QueueWorker, type QueueWorkerOptions, type QueueWorkerSummary } from "./server/queue/queue-worker.js";
export { DiffusionWorker, type WorkerExtensionClass } from "./workers/diffusion-worker.js";
export type { WorkerStats } from "./protocol/worker-stats.js";
export { loadPipeline } from "./pipelines/load.js";
export { registerPipeline, registeredPipelines, type PipelineFactory } from "./pipelines/registry.js";
export { OnnxDiffusionPipeline } from "./pipelines/onnx-diffusion-pipeline.js";
export { SdxlEnsemblePipeline } from "./pipelines/sdxl/sdxl-ensemble.js";
export { UnetProfile, type FixedUnetCost, type UnetKnee, type UnetProfileOptions, type UnetProfileSize } from "./pipelines/unet-profile.js";
export type { CallBudgetStats, MaxCallMs } from "./pipelines/call-planner.js";
export { isSteppable } from "./pipelines/types.js";
export { DEVICES, type Device } from "./pipelines/device.js";
export type { ModelLayout, SdxlLayout } from "./pipelines/model-layout.js";
export type { PipelineInfo } from "./core/pipeline-info.js";
export type { PipelineLoadOptions } from "./core/pipeline-load-options.js";
export type { LoraRef, LoraSpec } from "./core/weights.js";
export { weightsKey } from "./core/weights.js";
export { LoraCatalog, loraResolver, type LoraEntry } from "./pipelines/lora/lora-catalog.js";
export { extractLoraTags } from "./pipelines/lora/prompt-lora-tags.js";
export type { DiffusionPipeline, GenerateOptions, StepBatchInfo, StepProgress, SteppablePipeline, UnetCall } from "./pipelines/types.js";
export { createScheduler, SCHEDULER_NAMES, schedulersFor } from "./schedulers/index.js";
export type { Scheduler, SchedulerConfig, NoiseSource } from "./schedulers/types.js";
export { encodePng, decodePng, type RgbImage } from "./utils/png.js";
export * from "./errors/omni-error.js";
export { OmniServer, startServer, type OmniServerOptions } from "./server/omni-server.js";
export { serverConfigSchema, serverLimitsSchema, type ServerConfig, type ServerLimits, type ServerOptions } from "./server/app/server-options.js";
export type { OpenAIErrorBody } from "./server/app/error-mapping.js";
export { ServerMetrics, type GenerationOutcome } from "./metrics/server-metrics.js";
export { SqliteWebhookDispatcher, type WebhookDispatcherOptions, type WebhookLogger } from "./server/predictions/webhooks/sqlite-webhook-dispatcher.js";
export { webhookOptionsFromFlags, type WebhookFlags } from "./server/predictions/webhooks/webhook-flags.js";
