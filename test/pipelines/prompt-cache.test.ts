/**
 * The prompt encoder's embedding cache: a batch mixing cached and new prompts gives each prompt exactly the
 * embedding a fresh encoder gives it, in the caller's order, duplicates included.
 */
import assert from "node:assert/strict";
import { after, it } from "node:test";
import { componentPath } from "../../src/pipelines/model-files.js";
import { OnnxModel } from "../../src/pipelines/onnx-model.js";
import { PromptEncoder } from "../../src/pipelines/prompt-encoder.js";
import { DEFAULT_MODEL_DIR } from "../../src/core/paths.js";

const models: OnnxModel[] = [];
after(() => Promise.all(models.map((m) => m.release())));

async function encoder(): Promise<PromptEncoder> {
  const m = new OnnxModel("text_encoder", componentPath(DEFAULT_MODEL_DIR, "text_encoder"), { intraOpNumThreads: 1 });
  await m.load();
  models.push(m);
  return new PromptEncoder(DEFAULT_MODEL_DIR, m);
}

it("cached and fresh prompts come back in order, equal to a fresh encoder's", async () => {
  const [cached, fresh] = [await encoder(), await encoder()];
  const first = await cached.encode(["a red circle on a blue background", ""]);
  const mixed = ["", "a yellow star on a black background", "a red circle on a blue background", ""];
  const got = await cached.encode(mixed);
  assert.equal(got.tokens, first.tokens);
  assert.equal(got.dim, first.dim);
  const per = got.tokens * got.dim;
  for (const [i, p] of mixed.entries()) {
    const want = (await fresh.encode([p])).data;
    assert.deepEqual(got.data.subarray(i * per, (i + 1) * per), want, `prompt ${i} ("${p}")`);
  }
  const allCached = await cached.encode(["", "a yellow star on a black background"]);
  assert.deepEqual(allCached.data.subarray(per), (await fresh.encode(["a yellow star on a black background"])).data);
  assert.equal((await cached.encode([])).data.length, 0);
});
