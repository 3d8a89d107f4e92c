# The omni-diffusion worker image: `omni-diffusion worker` serving the shipped model (or one mounted at
# /models/<name> and passed with --model) over HTTP/JSON (8000), gRPC (50051) and the SageMaker container
# contract (8080: GET /ping, POST /invocations).
#
#   docker build -t omni-diffusion-worker .
#   docker run -p 8000:8000 -p 50051:50051 -e OMNI_DIFFUSION_API_KEY=secret omni-diffusion-worker
#
# As a SageMaker bring-your-own-container endpoint, SageMaker runs the image as `docker run <image> serve`;
# "serve" switches the worker to SageMaker's defaults (port 8080 on 0.0.0.0, /ping + /invocations only).

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY proto ./proto
# `npm ci` builds dist/ through the prepare script; then the dev dependencies go. onnxruntime-node's CUDA
# libraries (a NuGet download) are skipped: the image runs on CPU. Build with
# `--build-arg ONNXRUNTIME_NODE_INSTALL=cuda12` for a CUDA image.
ARG ONNXRUNTIME_NODE_INSTALL=skip
RUN ONNXRUNTIME_NODE_INSTALL=$ONNXRUNTIME_NODE_INSTALL npm ci && npm prune --omit=dev

FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin ./bin
COPY proto ./proto
COPY models ./models
USER node
EXPOSE 8000 50051 8080
ENTRYPOINT ["node", "bin/omni-diffusion.js", "worker"]
CMD ["--host", "0.0.0.0", "--http-port", "8000", "--grpc-port", "50051", "--sagemaker-port", "8080", "--sagemaker-host", "0.0.0.0"]
