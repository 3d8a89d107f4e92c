/**
 * Issue 23: `jobTtlMs` (`serve --job-ttl`) deletes completed predictions and their image files once they are
 * older than the TTL, on the server's clock (a manual one here), and leaves the younger ones.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { startServer, type OmniServer } from "../../src/index.js";
import { ManualClock } from "../helpers/manual-clock.js";

const HOUR = 3_600_000;

describe("retention: --job-ttl", { timeout: 120_000 }, () => {
  const dataDir = mkdtempSync(join(tmpdir(), "omni-predictions-ttl-"));
  let server: OmniServer;
  after(async () => {
    await server?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("a prediction past the TTL is deleted with its files; a younger one stays", async () => {
    const clock = new ManualClock(Date.UTC(2026, 5, 1));
    server = await startServer({ port: 0, logger: false, dataDir, jobTtlMs: HOUR, clock, engineConfig: { numGpus: 1, intraOpNumThreads: 1 } });
    const create = async (seed: number) => {
      const res = await fetch(`${server.url}/v1/predictions`, { method: "POST", headers: { "content-type": "application/json", prefer: "wait" }, body: JSON.stringify({ input: { prompt: "a red circle on a blue background", num_inference_steps: 2, seed } }) });
      const p = (await res.json()) as { id: string; status: string };
      assert.equal(p.status, "succeeded");
      return p.id;
    };
    const status = async (id: string) => (await fetch(`${server.url}/v1/predictions/${id}`)).status;
    const old = await create(1);
    const oldFile = join(dataDir, "files", old, "0.png");
    assert.ok(existsSync(oldFile), "the image is a file in the data dir");
    clock.advance(HOUR / 2);
    const young = await create(2);
    clock.advance(HOUR / 2 - 1); // old is 1 ms short of the TTL: a sweep now keeps it
    assert.equal(await status(old), 200);
    clock.advance(HOUR / 10 + 1); // the next sweep: old is past the TTL, young is not
    assert.equal(await status(old), 404);
    assert.equal(existsSync(join(dataDir, "files", old)), false, "its files went with it");
    assert.equal(await status(young), 200);
    assert.ok(existsSync(join(dataDir, "files", young, "0.png")));
  });
});
