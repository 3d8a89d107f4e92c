import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { startServer, type OmniServer } from "../../src/index.js";
import { LogCapture, decodeB64Png, parseMetrics, until } from "../helpers/server.js";

const STEPS = 150;
let server: OmniServer;
const logs = new LogCapture();

before(async () => {
  server = await startServer({ port: 0, engineConfig: { numGpus: 1, intraOpNumThreads: 1 }, logger: { level: "info", stream: logs.stream } });
});
after(() => server.close());

const body = (extra: Record<string, unknown> = {}) => JSON.stringify({ prompt: "a red circle on a blue background", size: "32x32", num_inference_steps: STEPS, seed: 9, ...extra });

/** The abort log line of the request whose id the server handed out in `x-request-id` or logged as accepted. */
const abortLine = (requestId: string) => (l: Record<string, unknown>) => l.msg === "client disconnected; generation aborted" && l.requestId === requestId;

test("a client that disconnects mid-request stops its generation between denoising steps", { timeout: 60_000 }, async () => {
  const client = new AbortController();
  const pending = fetch(`${server.url}/v1/images/generations`, { method: "POST", headers: { "content-type": "application/json" }, body: body(), signal: client.signal });
  pending.catch(() => undefined);
  const accepted = await logs.waitFor((l) => l.msg === "generation accepted" && l.stream === false, "of the accepted request");
  await until(() => server.engine.stats.inFlight === 1, "the request to run on the worker");
  client.abort();
  await assert.rejects(pending);
  const line = await logs.waitFor(abortLine(accepted.requestId as string), "about the aborted request");
  assert.equal(line.totalSteps, STEPS);
  assert.equal(typeof line.stoppedAtStep, "number", "the worker says where it stopped");
  assert.ok((line.stoppedAtStep as number) < STEPS, `stopped at step ${line.stoppedAtStep} of ${STEPS}`);
  await until(() => server.engine.stats.inFlight === 0, "the engine to let go of the aborted request");
  assert.equal(server.engine.stats.requestsFailed, 1);
});

test("a streaming client that disconnects after the first partial image stops its generation", { timeout: 60_000 }, async () => {
  const client = new AbortController();
  const res = await fetch(`${server.url}/v1/images/generations`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: body({ stream: true, partial_images: 1 }),
    signal: client.signal,
  });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /text\/event-stream/);
  const requestId = res.headers.get("x-request-id")!;
  const reader = res.body!.getReader();
  let text = "";
  while (!text.includes("\n\n")) {
    const { value, done } = await reader.read();
    assert.ok(!done, "the stream ended before the first event");
    text += Buffer.from(value).toString("utf8");
  }
  assert.match(text, /^event: image_generation\.partial_image\n/);
  const first = JSON.parse(text.split("\n")[1]!.slice("data: ".length)) as { b64_json: string; partial_image_index: number };
  assert.equal(first.partial_image_index, 0);
  assert.equal(decodeB64Png(first.b64_json).width, 32);
  client.abort();
  const line = await logs.waitFor(abortLine(requestId), "about the aborted stream");
  assert.ok((line.stoppedAtStep as number) < STEPS, `stopped at step ${line.stoppedAtStep} of ${STEPS}`);
  await until(() => server.engine.stats.inFlight === 0, "the engine to let go of the aborted request");
});

test("the worker serves the next request normally, and /metrics counts the disconnects as 499", async () => {
  const res = await fetch(`${server.url}/v1/images/generations`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: body({ num_inference_steps: 2 }),
  });
  assert.equal(res.status, 200);
  const m = parseMetrics(await (await fetch(`${server.url}/metrics`)).text());
  assert.equal(m.get('omni_http_requests_total{method="POST",route="/v1/images/generations",status_code="499"}'), 2);
  assert.equal(m.get('omni_generation_requests_total{outcome="aborted"}'), 2);
});
