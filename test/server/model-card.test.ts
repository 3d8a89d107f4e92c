/**
 * serve's model card asks rank 0 for `getStats`. A custom executor that does not implement it (an
 * UnknownMethodError, as docs/custom-executors.md's table allows) starts silently, as one without
 * `describeModel` does; one whose `getStats` fails for another reason gets one warning line.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { DiffusionExecutor, OmniError, UnknownMethodError, startServer, type CollectiveRpcOptions } from "../../src/index.js";
import { LogCapture } from "../helpers/server.js";

/** Answers `ping` only; `failStats` makes `getStats` fail with an ordinary error instead of "unknown method". */
class PingOnlyExecutor extends DiffusionExecutor {
  protected async initExecutor(): Promise<void> {}
  async collectiveRpc(method: string, opts: CollectiveRpcOptions = {}): Promise<unknown> {
    this.assertOpen();
    if (method === "ping") return opts.uniqueReplyRank === 0 ? { rank: 0 } : [{ rank: 0 }];
    if (method === "getStats" && this.config.executorOptions.failStats) throw new OmniError("stats backend is down");
    throw new UnknownMethodError(`PingOnlyExecutor has no method "${method}"`, { data: { method } });
  }
  async checkHealth(): Promise<void> {}
  protected async shutdown(): Promise<void> {}
}

async function warningsOf(failStats: boolean): Promise<string[]> {
  const logs = new LogCapture();
  const server = await startServer({ port: 0, engineConfig: { executorClass: PingOnlyExecutor, executorOptions: { failStats } }, logger: { level: "warn", stream: logs.stream } });
  await server.close();
  return logs.lines.filter((l) => l.level === 40).map((l) => String(l.msg));
}

describe("serve's model card and executors without getStats", () => {
  test("an executor that does not implement getStats starts without a warning", async () => {
    assert.deepEqual((await warningsOf(false)).filter((m) => /getStats/.test(m)), []);
  });

  test("a getStats that fails for another reason is one warning line naming it", async () => {
    const lines = (await warningsOf(true)).filter((m) => /getStats/.test(m));
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, /stats backend is down/);
  });
});
