/**
 * `sigma_min` / `sigma_max` in a scheduler config set the ends of every Karras schedule, as diffusers'
 * `_convert_to_karras` reads them (EulerDiscreteScheduler's keys; DPM-Solver gets them from the same
 * scheduler_config.json). The shipped tiny-shapes config sets SD's range: on its cosine schedule the training
 * range (0.0064 … 2·10⁴) put half of an 8-step Karras schedule at t ≥ 998 and dpmpp_2m_karras drew wrong colours.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { ValidationError } from "../../src/errors/omni-error.js";
import { createScheduler } from "../../src/schedulers/index.js";
import type { SchedulerConfig } from "../../src/schedulers/types.js";
import { close } from "./helpers.js";

const COSINE = { beta_schedule: "squaredcos_cap_v2", prediction_type: "v_prediction", timestep_spacing: "trailing" } as const satisfies SchedulerConfig;
const shipped = JSON.parse(readFileSync(new URL("../../models/tiny-shapes/scheduler/scheduler_config.json", import.meta.url), "utf8")) as SchedulerConfig;

describe("Karras range from the scheduler config (sigma_min / sigma_max)", () => {
  for (const name of ["dpmpp_2m_karras", "euler_karras"]) {
    it(`${name}: the schedule runs from sigma_max to sigma_min`, () => {
      const s = createScheduler(name, { ...COSINE, sigma_min: 0.0292, sigma_max: 14.6146 });
      s.setTimesteps(8);
      close(s.sigmas[0]!, 14.6146, 1e-9);
      close(s.sigmas[7]!, 0.0292, 1e-9);
      assert.equal(s.sigmas[8], 0);
      // sigma 14.6 sits at t ≈ 957 on the cosine schedule: no step is spent where the image has no signal left.
      assert.ok(s.timesteps[0]! > 950 && s.timesteps[0]! < 965, `first timestep ${s.timesteps[0]}`);
      assert.equal(new Set(s.timesteps.map(Math.round)).size, 8, `distinct timesteps: ${s.timesteps.join(", ")}`);
    });
  }

  it("null or absent keeps the schedule's own ends; other samplers ignore the keys", () => {
    const own = createScheduler("dpmpp_2m_karras", { ...COSINE, sigma_min: null, sigma_max: null });
    own.setTimesteps(8);
    assert.ok(own.sigmas[0]! > 2e4, `sigma_max of the cosine schedule: ${own.sigmas[0]}`);
    for (const name of ["euler", "dpmpp_2m", "ddim"]) {
      const a = createScheduler(name, COSINE);
      const b = createScheduler(name, { ...COSINE, sigma_min: 0.0292, sigma_max: 14.6146 });
      a.setTimesteps(8);
      b.setTimesteps(8);
      assert.deepEqual(b.timesteps, a.timesteps, name);
      assert.deepEqual(b.sigmas, a.sigmas, name);
    }
  });

  it("the shipped tiny-shapes config sets SD's range", () => {
    assert.equal(shipped.sigma_min, 0.0292);
    assert.equal(shipped.sigma_max, 14.6146);
    const s = createScheduler("dpmpp_2m_karras", shipped);
    s.setTimesteps(8);
    close(s.sigmas[0]!, 14.6146, 1e-9);
  });

  for (const [config, key] of [
    [{ sigma_max: -1 }, "sigma_max"],
    [{ sigma_min: "small" }, "sigma_min"],
    [{ sigma_max: Number.POSITIVE_INFINITY }, "sigma_max"],
    [{ sigma_min: 20, sigma_max: 10 }, "sigma_min"],
  ] as const) {
    it(`refuses ${Object.entries(config).map(([k, v]) => `${k} = ${String(v)}`).join(", ")}, naming ${key}`, () => {
      assert.throws(
        () => createScheduler("euler_karras", { ...COSINE, ...(config as SchedulerConfig) }),
        (err: unknown) => err instanceof ValidationError && err.field === "scheduler" && (err.data as { key: string }).key === key && err.message.includes(key),
      );
    });
  }
});
