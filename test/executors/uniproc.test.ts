import { runExecutorConformance } from "../conformance/executor-conformance.js";

runExecutorConformance("uniproc", () => ({ executorClass: "uniproc", intraOpNumThreads: 1 }), { expectedRanks: 1 });
