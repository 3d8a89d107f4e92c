// `omni-diffusion/testing`: the executor conformance suite, for executors written against this package.
// Only re-exports live here. It needs node:test (Node's built-in test runner).
export { runExecutorConformance, type ConformanceOptions } from "./executor-conformance.js";
