import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { test } from "node:test";
import { OmniServer, WorkerDiedError } from "../../src/index.js";
import { GatedExecutor } from "../fixtures/server/gated-executor.js";

/** pino lines the server wrote, parsed. */
function capture(): { stream: Writable; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split("\n")) if (l.trim()) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { stream, lines };
}

test("GET /health logs nothing while healthy (a probe every few seconds would drown the log), and one warning when not", async () => {
  const { stream, lines } = capture();
  const server = await OmniServer.create({
    logger: { level: "info", stream },
    defaultMetrics: false,
    engineConfig: { executorClass: GatedExecutor, batchWindowMs: 0 },
  });
  try {
    const before = lines.length;
    for (let i = 0; i < 3; i++) assert.equal((await server.app.inject({ method: "GET", url: "/health" })).statusCode, 200);
    assert.deepEqual(lines.slice(before), [], "healthy probes write no log line");
    // Other routes still log their requests.
    await server.app.inject({ method: "GET", url: "/v1/models" });
    assert.ok(lines.some((l) => JSON.stringify(l).includes("/v1/models")), "other requests are still logged");

    (server.engine.executor as GatedExecutor).fail(new WorkerDiedError("every worker rank died"));
    const failedAt = lines.length; // the executor's own failure line is written by now
    assert.equal((await server.app.inject({ method: "GET", url: "/health" })).statusCode, 503);
    const probeLines = lines.slice(failedAt);
    const warnings = probeLines.filter((l) => (l.level as number) >= 40);
    assert.equal(warnings.length, 1, `one warning for the failed check: ${JSON.stringify(probeLines)}`);
    assert.match(JSON.stringify(warnings[0]), /every worker rank died/);
  } finally {
    await server.close({ timeoutMs: 0 });
  }
});
