import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { ValidationError } from "../../src/errors/omni-error.js";
import {
  SCHEDULER_NAMES,
  closestOffered,
  createScheduler,
  isSchedulerName,
  schedulerMisfitMessage,
  schedulersFor,
  unfitSchedulers,
} from "../../src/schedulers/index.js";
import { SD_CONFIG } from "./helpers.js";

describe("scheduler registry", () => {
  it("lists every name and builds each", () => {
    assert.deepEqual(
      [...SCHEDULER_NAMES].sort(),
      ["ddim", "dpmpp_2m", "dpmpp_2m_karras", "euler", "euler_a", "euler_ancestral", "euler_karras", "flow_euler", "lcm", "pndm"],
    );
    for (const name of SCHEDULER_NAMES) {
      const s = createScheduler(name, name === "flow_euler" ? {} : SD_CONFIG);
      assert.equal(s.name, name);
      s.setTimesteps(4);
      // PLMS makes one extra model call (its second timestep repeats).
      assert.equal(s.timesteps.length, name === "pndm" ? 5 : 4);
    }
  });

  it("karras names switch use_karras_sigmas on", () => {
    assert.equal(createScheduler("euler_karras", SD_CONFIG).config.use_karras_sigmas, true);
    assert.equal(createScheduler("dpmpp_2m_karras", SD_CONFIG).config.use_karras_sigmas, true);
    assert.equal(createScheduler("euler", SD_CONFIG).config.use_karras_sigmas, false);
  });

  it("names are case- and dash-insensitive", () => {
    assert.equal(createScheduler("Euler-A", SD_CONFIG).name, "euler_a");
    assert.ok(isSchedulerName("DPMPP-2M-Karras"));
    assert.ok(!isSchedulerName("plms"));
  });

  it("null name picks the sampler from _class_name", () => {
    const cases: Record<string, string> = {
      DDIMScheduler: "ddim",
      DDPMScheduler: "ddim",
      PNDMScheduler: "pndm",
      EulerDiscreteScheduler: "euler",
      EulerAncestralDiscreteScheduler: "euler_a",
      DPMSolverMultistepScheduler: "dpmpp_2m",
      LCMScheduler: "lcm",
      FlowMatchEulerDiscreteScheduler: "flow_euler",
    };
    for (const [cls, name] of Object.entries(cases)) {
      const cfg = cls === "FlowMatchEulerDiscreteScheduler" ? { _class_name: cls, shift: 3 } : { ...SD_CONFIG, _class_name: cls };
      assert.equal(createScheduler(null, cfg).name, name, cls);
      assert.equal(createScheduler(undefined, cfg).name, name, cls);
    }
    // The config's own karras flag carries over.
    const k = createScheduler(null, { ...SD_CONFIG, _class_name: "EulerDiscreteScheduler", use_karras_sigmas: true });
    assert.equal(k.config.use_karras_sigmas, true);
  });

  it("SD 1.5's PNDM config drives PNDM (PLMS) with its leading/offset settings", () => {
    const s = createScheduler(null, {
      _class_name: "PNDMScheduler",
      ...SD_CONFIG,
      num_train_timesteps: 1000,
      set_alpha_to_one: false,
      skip_prk_steps: true,
      steps_offset: 1,
      trained_betas: null,
      clip_sample: false,
    });
    s.setTimesteps(50);
    assert.equal(s.name, "pndm");
    // PLMS repeats the second timestep: 51 model calls for 50 steps.
    assert.deepEqual(s.timesteps.slice(0, 3), [981, 961, 961]);
    assert.equal(s.timesteps.length, 51);
    assert.equal(s.timesteps[50], 1);
  });

  it("unknown names and classes throw ValidationError listing the known names", () => {
    assert.throws(
      () => createScheduler("plms", SD_CONFIG),
      (e: unknown) => e instanceof ValidationError && e.field === "scheduler" && e.message.includes("dpmpp_2m_karras"),
    );
    assert.throws(() => createScheduler(null, { _class_name: "SomethingScheduler" }), (e: unknown) => e instanceof ValidationError && e.field === "scheduler");
    assert.throws(() => createScheduler(null, {}), ValidationError);
    assert.throws(() => createScheduler("__proto__", {}), ValidationError);
  });

  it("every scheduler validates num_inference_steps with field num_inference_steps", () => {
    for (const name of SCHEDULER_NAMES) {
      const s = createScheduler(name, name === "flow_euler" ? {} : SD_CONFIG);
      for (const n of [0, 1001, 1.5]) {
        assert.throws(
          () => s.setTimesteps(n),
          (e: unknown) => e instanceof ValidationError && e.field === "num_inference_steps",
          `${name} ${n}`,
        );
      }
    }
  });
});

describe("samplers a model declares unfit (_omni_unfit_samplers)", () => {
  const cfg = { prediction_type: "v_prediction", _omni_unfit_samplers: { PNDM: "draws wrong colours here" } } as const;

  it("are left out of schedulersFor with the config, and their reasons read back by normalised name", () => {
    assert.ok(schedulersFor("v_prediction").includes("pndm"));
    assert.ok(!schedulersFor("v_prediction", cfg).includes("pndm"));
    assert.deepEqual(unfitSchedulers(cfg), { pndm: "draws wrong colours here" });
    assert.deepEqual(unfitSchedulers({}), {});
  });

  it("a bad declaration is a ValidationError naming the key", () => {
    for (const bad of [["pndm"], "pndm", { nope: "x" }, { pndm: "" }, { pndm: 3 }, JSON.parse('{"__proto__": "x"}') as unknown]) {
      assert.throws(
        () => unfitSchedulers({ _omni_unfit_samplers: bad }),
        (e: unknown) => e instanceof ValidationError && e.field === "scheduler" && (e.data as { key: string }).key === "_omni_unfit_samplers",
        JSON.stringify(bad),
      );
    }
  });

  it("closestOffered: itself when offered, else the closest offered substitute, else null", () => {
    const offered = schedulersFor("v_prediction", cfg);
    assert.equal(closestOffered("pndm", offered), "ddim");
    assert.equal(closestOffered("dpmpp_2m_karras", ["dpmpp_2m", "ddim"]), "dpmpp_2m");
    assert.equal(closestOffered("Euler-A", offered), "euler_a");
    assert.equal(closestOffered("ddim", ["flow_euler"]), null);
    assert.equal(closestOffered("__proto__", offered), null);
  });

  it("the refusal message gives the model's reason, else the prediction type", () => {
    const model = { predictionType: "v_prediction", schedulers: ["ddim"], unfitSchedulers: { pndm: "draws wrong colours here" } };
    assert.equal(schedulerMisfitMessage("PNDM", model), 'scheduler "PNDM" is not offered for this model: draws wrong colours here; use one of: ddim');
    assert.equal(schedulerMisfitMessage("flow_euler", model), 'scheduler "flow_euler" does not fit this model (prediction type v_prediction); use one of: ddim');
  });
});
