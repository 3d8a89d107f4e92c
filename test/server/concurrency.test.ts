import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import OpenAI from "openai";
import { startServer, type OmniServer } from "../../src/index.js";
import { decodeB64Png, maxPixelDiff, parseMetrics, until } from "../helpers/server.js";

const LATCH = `${fileURLToPath(new URL("../fixtures/server/latch-extension.ts", import.meta.url))}#LatchExtension`;

const PROMPTS = ["a red circle on a blue background", "a yellow star on a black background", "a white cross on a green background", "a blue square on a white background"];
const N = 50;

let server: OmniServer;
let client: OpenAI;
let dir: string;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), "omni-latch-"));
  server = await startServer({ port: 0, engineConfig: { numGpus: 1, intraOpNumThreads: 1, limits: { maxBatchSize: 8 }, workerExtension: LATCH }, logger: false });
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0, timeout: 120_000 });
});
after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

const params = (i: number) =>
  ({ prompt: PROMPTS[i % PROMPTS.length]!, size: "32x32", num_inference_steps: 2, seed: 1_000 + i }) as OpenAI.ImageGenerateParamsNonStreaming;

test(`${N} concurrent requests each get their own image, matching a single run of their own seed`, { timeout: 120_000 }, async () => {
  // The worker is held until every request is in the engine and the first batch has been sent to it, so that
  // batch reaches the worker's step loop at once: they share UNet calls by construction, not by timing.
  const open = join(dir, "open");
  const held = server.engine.collectiveRpc("holdUntil", { args: [open] });
  const pending = Promise.all(Array.from({ length: N }, (_, i) => client.images.generate(params(i)).withResponse()));
  await until(() => server.engine.stats.queued + server.engine.stats.inFlight === N && server.engine.stats.inFlight > 1, `all ${N} requests to reach the engine`, 120_000);
  writeFileSync(open, "");
  await held;
  const results = await pending;
  const ids = results.map((r) => r.response.headers.get("x-request-id"));
  assert.equal(new Set(ids).size, N, "request ids are unique");
  const images = results.map((r) => {
    assert.equal(r.data.data?.length, 1);
    const png = decodeB64Png(r.data.data![0]!.b64_json!);
    assert.deepEqual([png.width, png.height], [32, 32]);
    return png;
  });
  const digests = images.map((p) => createHash("sha256").update(p.data).digest("hex"));
  assert.equal(new Set(digests).size, N, "every request got a different image");

  // Ran again one at a time (so never batched), a request's image is the one it got under load, and not its neighbour's.
  for (const i of [0, 17, 33, 49]) {
    const alone = decodeB64Png((await client.images.generate(params(i))).data![0]!.b64_json!);
    assert.ok(maxPixelDiff(alone, images[i]!) <= 2, `request ${i}: max pixel difference ${maxPixelDiff(alone, images[i]!)} to its single run`);
    const neighbour = (i + 1) % N;
    assert.ok(maxPixelDiff(alone, images[neighbour]!) > 2, `request ${i}'s single run also matches request ${neighbour}`);
  }

  const m = parseMetrics(await (await fetch(`${server.url}/metrics`)).text());
  const batched = m.get("omni_batch_size_sum")!;
  assert.equal(batched, N + 4, "every request ran in exactly one executor call");
  // Continuous batching (the default): requests share UNet calls, not executor calls. Every request took
  // 2 steps of 2 rows (the model's default guidance), each row in exactly one call.
  const rowSteps = m.get("omni_unet_batch_rows_sum")!;
  const calls = m.get("omni_unet_batch_rows_count")!;
  assert.equal(rowSteps, (N + 4) * 2 * 2, "every row of every step ran in exactly one UNet call");
  assert.ok(calls < (N + 4) * 2, `the ${N} concurrent requests shared UNet calls (${calls} calls for ${(N + 4) * 2} request-steps)`);
  assert.equal(m.get("omni_time_to_first_step_seconds_count"), N + 4);
  assert.equal(m.get('omni_generation_requests_total{outcome="ok"}'), N + 4);
});
