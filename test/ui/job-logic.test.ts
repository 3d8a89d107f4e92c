import assert from "node:assert/strict";
import { test } from "node:test";
import { errorFromResponse } from "../../playground/lib/api.js";
import { parseForm, toFormValues } from "../../playground/lib/params.js";
import { describeState, isFinal, paramsFromInput, pathOf, progressOf, toPredictionInput, type Prediction } from "../../playground/lib/predictions.js";

// The playground's job logic, in Node: the page's own ES module, imported unchanged.

const base: Prediction = { id: "x", status: "starting", input: {}, output: null, error: null, logs: "", created_at: "2026-01-01T00:00:00.000Z", urls: { get: "", cancel: "", stream: "" } };

test("the form's parameters become a prediction input and come back unchanged", () => {
  const params = parseForm({ prompt: " a red circle ", negativePrompt: "blur", size: "64x32", steps: "12", guidance: "7.5", sampler: "euler", seed: "7", n: "2" });
  const input = toPredictionInput(params);
  assert.deepEqual(input, { prompt: "a red circle", negative_prompt: "blur", width: 64, height: 32, num_inference_steps: 12, guidance_scale: 7.5, scheduler: "euler", seed: 7, num_outputs: 2 });
  assert.deepEqual(paramsFromInput(input), params);
  assert.deepEqual(toFormValues(paramsFromInput(input)).size, "64x32");
  const auto = toPredictionInput(parseForm({ prompt: "p", negativePrompt: "", size: "auto", steps: "4", guidance: "0", sampler: "", seed: "", n: "1" }));
  assert.deepEqual(auto, { prompt: "p", num_inference_steps: 4, guidance_scale: 0, seed: null, num_outputs: 1 }, "auto size, default sampler and no negative prompt are left out");
});

test("a job from another client takes the model's defaults for what its input left out", () => {
  const p = paramsFromInput({ prompt: "a star" }, { steps: 20, guidance: 8 });
  assert.deepEqual(p, { prompt: "a star", negativePrompt: "", size: "auto", steps: 20, guidance: 8, sampler: "", seed: null, n: 1 });
});

test("progress is the last step line of the logs", () => {
  assert.equal(progressOf(""), null);
  assert.equal(progressOf("The server restarted while this prediction was running; it runs again from the start.\n"), null);
  assert.deepEqual(progressOf("  8%|█         | 1/12\n 17%|██        | 2/12\n"), { step: 2, total: 12 });
  assert.deepEqual(progressOf(" 50%|█████     | 6/12"), { step: 6, total: 12 }, "a chunk without its newline");
});

test("a job's line says where it stands; queue position first", () => {
  assert.equal(describeState({ ...base, status: "starting", queue_position: 3 }, null), "queued · position 3");
  assert.equal(describeState({ ...base, status: "processing", queue_position: 1 }, null), "queued · position 1", "started but waiting in the engine's queue");
  assert.equal(describeState({ ...base, status: "starting", queue_position: null }, null), "queued");
  assert.equal(describeState({ ...base, status: "processing" }, { step: 3, total: 20 }), "running · step 3 of 20");
  assert.equal(describeState({ ...base, status: "failed", error: "boom" }, null), "failed: boom");
  assert.equal(describeState({ ...base, status: "canceled" }, null), "canceled");
  assert.deepEqual(["starting", "processing", "succeeded", "failed", "canceled", "aborted"].map(isFinal), [false, false, true, true, true, true]);
});

test("URLs the server built are fetched by path from the page's own origin", () => {
  assert.equal(pathOf("http://10.0.0.5:8000/v1/predictions/abc/files/tok/0.png"), "/v1/predictions/abc/files/tok/0.png");
  assert.equal(pathOf("https://public.example/v1/predictions?cursor=MTA"), "/v1/predictions?cursor=MTA");
});

test("Replicate-shaped errors (the predictions API) read as their detail", () => {
  const e = errorFromResponse(422, JSON.stringify({ title: "Input validation failed", detail: "input.width: 33 is not a multiple of 8", status: 422 }));
  assert.equal(e.message, "input.width: 33 is not a multiple of 8 (HTTP 422)");
});
