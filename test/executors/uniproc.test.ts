import { runExecutorConformance } from "../../src/testing/executor-conformance.js";

runExecutorConformance("uniproc", () => ({ executorClass: "uniproc", intraOpNumThreads: 1 }), { expectedRanks: 1 });
