/** Keeps docs/ in step with the code: every config key and every error code is documented. */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { PACKAGE_ROOT } from "../../src/core/paths.js";
import { configSchema, limitsSchema } from "../../src/core/config.js";
import { ERROR_CODES } from "../../src/errors/omni-error.js";

const doc = (name: string) => readFileSync(join(PACKAGE_ROOT, "docs", name), "utf8");

test("docs/configuration.md lists every config key", () => {
  const md = doc("configuration.md");
  for (const key of Object.keys(configSchema.shape)) if (key !== "limits") assert.ok(md.includes(`| \`${key}\``), `config key ${key} is not documented`);
  for (const key of Object.keys(limitsSchema.shape)) assert.ok(md.includes(`limits.${key}`), `limits.${key} is not documented`);
});

test("docs/errors.md lists every error code, and no code that does not exist", () => {
  const md = doc("errors.md");
  const documented = new Set([...md.matchAll(/\| `(OMNI_ERR_[A-Z_]+)` \|/g)].map((m) => m[1]));
  assert.deepEqual([...documented].sort(), [...ERROR_CODES].sort());
});

test("docs/configuration.md states the shipped model's request defaults as model_index.json has them", () => {
  const md = doc("configuration.md");
  const stated = /tiny-shapes: (\d+) steps,\s+guidance ([\d.]+), (\w+)\)/.exec(md);
  assert.ok(stated, "configuration.md states tiny-shapes' defaults as `tiny-shapes: N steps, guidance G, SCHEDULER)`");
  const index = JSON.parse(readFileSync(join(PACKAGE_ROOT, "models", "tiny-shapes", "model_index.json"), "utf8")) as {
    _omni_defaults: { num_inference_steps: number; guidance_scale: number; scheduler: string };
  };
  assert.deepEqual(
    [Number(stated[1]), Number(stated[2]), stated[3]!.toLowerCase()],
    [index._omni_defaults.num_inference_steps, index._omni_defaults.guidance_scale, index._omni_defaults.scheduler],
  );
});
