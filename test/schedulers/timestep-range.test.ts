/**
 * DDIM and PNDM index ᾱ by training timestep: a step count whose timesteps (with steps_offset) pass the last
 * training timestep is refused when the sampler is set up, naming the field, instead of failing at the first
 * step as an internal error (1000 steps on SD 1.5's config reached timestep 1000: a 500 from A1111's txt2img).
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { ValidationError } from "../../src/errors/omni-error.js";
import { createScheduler } from "../../src/schedulers/index.js";

const SD15 = JSON.parse(readFileSync(join(import.meta.dirname, "..", "fixtures", "models", "sd15", "scheduler", "scheduler_config.json"), "utf8"));

describe("timesteps within the training range", () => {
  for (const name of ["ddim", "pndm"]) {
    it(`${name}: 1000 steps with steps_offset 1 is a ValidationError on num_inference_steps; 999 runs`, () => {
      assert.equal(SD15.steps_offset, 1);
      assert.throws(
        () => createScheduler(name, SD15).setTimesteps(1000),
        (e: unknown) => e instanceof ValidationError && e.field === "num_inference_steps" && /reach 1000, past the last of the model's 1000 training timesteps; ask for at most 999/.test(e.message),
      );
      const s = createScheduler(name, SD15);
      s.setTimesteps(999);
      assert.ok(Math.max(...s.timesteps) < 1000);
    });
  }
});
