import assert from "node:assert/strict";
import { test } from "node:test";
import { ApiError, errorFromResponse, authHeaders } from "../../playground/lib/api.js";
import { pushBounded, sparklinePath } from "../../playground/lib/chart.js";
import { busyRate, parsePrometheus, rates, snapshot, total } from "../../playground/lib/metrics.js";
import { FieldError, MAX_SEED, describeParams, parseForm, randomSeed, toFormValues, toRequestBody } from "../../playground/lib/params.js";
import { SseParser, readSse } from "../../playground/lib/sse.js";

// The playground's logic, in Node: the page's own ES modules, imported unchanged.

test("SSE: events split at every possible byte boundary parse the same", () => {
  const stream = 'event: image_generation.partial_image\ndata: {"a":1}\n\n: keep-alive\n\nevent: error\r\ndata: line one\r\ndata: line two\r\n\r\ndata:no-space\rid: 7\r\r';
  const expected = [
    { event: "image_generation.partial_image", data: '{"a":1}', id: null },
    { event: "error", data: "line one\nline two", id: null },
    { event: "message", data: "no-space", id: "7" },
  ];
  const whole = new SseParser();
  assert.deepEqual(whole.feed(stream), expected.slice(0, 2), "the final CR may begin a CRLF: held back until more text or the end");
  assert.deepEqual(whole.end(), expected.slice(2));
  for (let cut = 1; cut < stream.length; cut++) {
    const p = new SseParser();
    assert.deepEqual([...p.feed(stream.slice(0, cut)), ...p.feed(stream.slice(cut)), ...p.end()], expected, `split at ${cut}`);
  }
  const p = new SseParser();
  assert.deepEqual([...[...stream].flatMap((ch) => p.feed(ch)), ...p.end()], expected, "one character at a time");
});

test("SSE: an event without its closing blank line is dropped; a field-less blank line is no event", () => {
  const p = new SseParser();
  assert.deepEqual(p.feed("\n\nevent: x\n\ndata: half"), []);
  assert.deepEqual(p.end(), []);
  assert.deepEqual(new SseParser().feed("event: only-a-name\n\n"), [], "no data, no event");
});

test("SSE: readSse yields the events of a byte stream, multi-byte characters split across chunks", async () => {
  const bytes = new TextEncoder().encode('event: completed\ndata: {"prompt":"ünïcødé ★"}\n\n');
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      for (let i = 0; i < bytes.length; i += 3) c.enqueue(bytes.slice(i, i + 3));
      c.close();
    },
  });
  const events = [];
  for await (const ev of readSse(body)) events.push(ev);
  assert.deepEqual(events, [{ event: "completed", data: '{"prompt":"ünïcødé ★"}', id: null }]);
});

const form = { prompt: "  a red circle on a blue background ", negativePrompt: "", size: "32x32", steps: "20", guidance: "7.5", sampler: "euler", seed: "", n: "2" };

test("params: the form becomes the OpenAI body; an empty seed is random and recorded", () => {
  const p = parseForm(form);
  assert.deepEqual(p, { prompt: "a red circle on a blue background", negativePrompt: "", size: "32x32", steps: 20, guidance: 7.5, sampler: "euler", seed: null, n: 2 });
  const seed = randomSeed(() => 0.5);
  assert.equal(seed, 2 ** 31);
  assert.deepEqual(toRequestBody({ ...p, seed }, { model: "tiny-shapes" }), {
    prompt: "a red circle on a blue background",
    model: "tiny-shapes",
    size: "32x32",
    n: 2,
    num_inference_steps: 20,
    guidance_scale: 7.5,
    scheduler: "euler",
    seed,
    response_format: "b64_json",
    stream: true,
    partial_images: 3,
  });
  const withNegative = toRequestBody({ ...p, negativePrompt: "blurry", sampler: "", seed: 1 });
  assert.equal(withNegative.negative_prompt, "blurry");
  assert.equal("scheduler" in withNegative, false, "no sampler chosen: the model's default");
});

test("params: restoring a gallery entry gives back exactly its parameters", () => {
  for (const p of [
    { prompt: "a yellow star on a black background", negativePrompt: "blurry", size: "64x64", steps: 150, guidance: 0, sampler: "", seed: 0, n: 1 },
    { prompt: "x", negativePrompt: "", size: "32x32", steps: 1, guidance: 12.25, sampler: "dpmpp_2m_karras", seed: MAX_SEED, n: 10 },
    { prompt: "y", negativePrompt: "", size: "auto", steps: 3, guidance: 8, sampler: "lcm", seed: null, n: 4 },
  ]) {
    assert.deepEqual(parseForm(toFormValues(p)), p);
  }
  assert.equal(describeParams({ ...parseForm(form), seed: 5 }), "32x32 · 20 steps · guidance 7.5 · euler · seed 5");
});

test("params: a bad value names its field", () => {
  const bad = (over: Partial<typeof form>, field: string, message: RegExp, limits = {}) =>
    assert.throws(() => parseForm({ ...form, ...over }, limits), (e: unknown) => e instanceof FieldError && e.field === field && message.test((e as FieldError).message));
  bad({ prompt: "  " }, "prompt", /Write a prompt/);
  bad({ steps: "0" }, "steps", /Steps must be a whole number from 1 to 150/);
  bad({ steps: "2.5" }, "steps", /whole number/);
  bad({ steps: "30" }, "steps", /from 1 to 25/, { maxSteps: 25 });
  bad({ guidance: "abc" }, "guidance", /Guidance must be a number/);
  bad({ seed: "-1" }, "seed", /Seed must be a whole number from 0/);
  bad({ seed: String(MAX_SEED + 1) }, "seed", /Seed/);
  bad({ n: "11" }, "n", /Number of images must be a whole number from 1 to 10/);
  bad({ n: "3" }, "n", /from 1 to 2/, { maxN: 2 });
  bad({ size: "big" }, "size", /Size must look like 32x32/);
});

// What prom-client writes (labels with spaces and escaped quotes included).
const METRICS = `# HELP omni_images_generated_total Images returned to clients.
# TYPE omni_images_generated_total counter
omni_images_generated_total 12
# TYPE omni_unet_batch_rows histogram
omni_unet_batch_rows_bucket{le="1"} 0
omni_unet_batch_rows_bucket{le="+Inf"} 10
omni_unet_batch_rows_sum 40
omni_unet_batch_rows_count 10
omni_queue_depth 3
omni_requests_running 2
omni_generation_requests_total{outcome="ok"} 5
omni_generation_requests_total{outcome="aborted"} 1
omni_executor_endpoint_state{endpoint="http://a b/\\"x\\"",state="open"} 1
`;

test("metrics: Prometheus text parses, label values with spaces included", () => {
  const m = parsePrometheus(METRICS);
  assert.equal(m.get("omni_images_generated_total"), 12);
  assert.equal(m.get('omni_unet_batch_rows_bucket{le="+Inf"}'), 10);
  assert.equal(m.get('omni_executor_endpoint_state{endpoint="http://a b/\\"x\\"",state="open"}'), 1);
  assert.equal(total(m, "omni_generation_requests_total"), 6);
  assert.equal(total(m, "omni_unet_batch_rows"), 0, "a name matches itself, not its _sum or _count");
  assert.deepEqual(snapshot(METRICS, 1_000), { at: 1_000, images: 12, rowsSum: 40, rowsCount: 10, queueDepth: 3, running: 2 });
});

test("metrics: images/s and rows per UNet call between two scrapes", () => {
  const a = { at: 0, images: 10, rowsSum: 40, rowsCount: 10, queueDepth: 0, running: 0 };
  const b = { at: 2_000, images: 14, rowsSum: 70, rowsCount: 15, queueDepth: 0, running: 1 };
  assert.deepEqual(rates(a, b), { imagesPerSecond: 2, rowsPerCall: 6 });
  assert.deepEqual(rates(null, a), { imagesPerSecond: 0, rowsPerCall: 4 }, "first scrape: lifetime rows per call, no rate yet");
  assert.deepEqual(rates(b, { ...b, at: 4_000 }), { imagesPerSecond: 0, rowsPerCall: 70 / 15 }, "idle: lifetime rows per call");
  assert.deepEqual(rates(b, { at: 3_000, images: 1, rowsSum: 2, rowsCount: 1, queueDepth: 0, running: 0 }), { imagesPerSecond: 1, rowsPerCall: 2 }, "a restarted server counts from zero");
  assert.deepEqual(rates(null, { ...a, rowsSum: 0, rowsCount: 0 }).rowsPerCall, null);
});

test("chart: the sparkline spans the box, newest at the right, largest at the top", () => {
  assert.equal(sparklinePath([], 100, 10), "");
  assert.equal(sparklinePath([0, 5, 10], 100, 10), "M0.0,10.0 L50.0,5.0 L100.0,0.0");
  assert.equal(sparklinePath([1], 100, 10, 2), "M100.0,5.0");
  assert.equal(sparklinePath([0, 0], 100, 10), "M0.0,10.0 L100.0,10.0", "all zero: a flat line at the bottom, no division by zero");
  assert.deepEqual(pushBounded([1, 2, 3], 4, 3), [2, 3, 4]);
});

test("api: refusals read as sentences a person can act on", () => {
  const e401 = errorFromResponse(401, JSON.stringify({ error: { message: "Incorrect API key provided.", type: "invalid_request_error", param: null, code: "invalid_api_key" } }));
  assert.ok(e401 instanceof ApiError);
  assert.equal(e401.message, "Check the API key. Incorrect API key provided. (HTTP 401)");
  assert.equal(e401.code, "invalid_api_key");
  assert.equal(errorFromResponse(429, '{"error":{"message":"queue is full"}}').message, "The server is busy; try again shortly. queue is full (HTTP 429)");
  assert.equal(errorFromResponse(502, "<html>Bad Gateway</html>").message, "<html>Bad Gateway</html> (HTTP 502)");
  assert.equal(errorFromResponse(500, "").message, "HTTP 500 (HTTP 500)");
  assert.deepEqual(authHeaders(""), {});
  assert.deepEqual(authHeaders("k"), { authorization: "Bearer k" });
});

test("metrics: Images/s is images over the server's busy time; an idle interval gives null (the page keeps the last figure)", () => {
  assert.equal(busyRate(null, { images: 0, busySeconds: 0 }), null, "nothing generated yet");
  assert.equal(busyRate(null, { images: 6, busySeconds: 2 }), 3, "first poll: the server's lifetime");
  assert.equal(busyRate({ images: 6, busySeconds: 2 }, { images: 10, busySeconds: 3 }), 4, "over the interval");
  assert.equal(busyRate({ images: 10, busySeconds: 3 }, { images: 10, busySeconds: 3 }), null, "idle");
  assert.equal(busyRate({ images: 10, busySeconds: 3 }, { images: 10, busySeconds: 4 }), 0, "busy and nothing made (a failed request)");
  assert.equal(busyRate({ images: 10, busySeconds: 3 }, { images: 2, busySeconds: 0.5 }), 4, "totals went down: the server restarted");
});
