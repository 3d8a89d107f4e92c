/**
 * Every VP sampler, step by step, against the numpy transcription of diffusers' algorithm
 * (training/fixtures/schedulers.py via make_sampler_fixture.py) on the shipped model's schedule: cosine
 * `squaredcos_cap_v2`, v-prediction, trailing spacing, T = 1000, for 4-20 steps. The "model" is a fixed smooth
 * function of sample and timestep (the same formula on both sides); ancestral noise is replayed from the file.
 * The "+sd_range" cases set the Karras range to SD's (`sigma_min` / `sigma_max`), as the shipped model does.
 *
 * This is what rules out a porting bug behind the few-step failures of `dpmpp_2m_karras` and `pndm` on
 * tiny-shapes (docs/schedulers.md): every timestep, sigma and sample agrees with the reference.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { createScheduler } from "../../src/schedulers/index.js";
import type { NoiseSource, SchedulerConfig } from "../../src/schedulers/types.js";

interface Trajectory {
  timesteps: number[];
  initNoiseSigma: number;
  samples: string;
  noise: string;
}
interface Fixture {
  config: SchedulerConfig;
  /** Per case, config keys over `config` (LCM's class keys, the Karras range); the case's name before "+" is the sampler. */
  extraConfig: Record<string, SchedulerConfig>;
  mu: number[];
  dim: number;
  xT: string;
  samplers: Record<string, Record<string, Trajectory>>;
}

const fixture = JSON.parse(readFileSync(new URL("../fixtures/schedulers/cosine-v-prediction.json", import.meta.url), "utf8")) as Fixture;

function f32(b64: string): Float32Array {
  const buf = Buffer.from(b64, "base64");
  const out = new Float32Array(buf.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = buf.readFloatLE(i * 4);
  return out;
}

/** The fixture's model, in float64 from the float32 input like the Python side. */
function model(x: Float32Array, t: number): Float32Array {
  return Float32Array.from(x, (v, i) => 0.8 * v * Math.cos(t / 400) - 0.5 * fixture.mu[i]! * Math.sin(t / 700 + 0.2) + 0.1 * Math.tanh(2 * v));
}

/** Hands out the reference's recorded noise in order, and says if a sampler asks for more or other sizes. */
function replay(noise: Float32Array, dim: number): NoiseSource & { used: () => number } {
  let at = 0;
  return {
    randn(out: Float32Array): Float32Array {
      assert.equal(out.length, dim, "noise draw size");
      assert.ok(at + dim <= noise.length, "the sampler draws more noise than the reference did");
      out.set(noise.subarray(at, at + dim));
      at += dim;
      return out;
    },
    used: () => at,
  };
}

describe("samplers step by step against diffusers' algorithm on a cosine v-prediction schedule (4-20 steps)", () => {
  const xT = f32(fixture.xT);
  for (const [name, byN] of Object.entries(fixture.samplers)) {
    const sampler = name.split("+")[0]!;
    it(name, () => {
      let worst = 0;
      for (const [nText, ref] of Object.entries(byN)) {
        const n = Number(nText);
        const where = `${name} ${n} steps`;
        const s = createScheduler(sampler, { ...fixture.config, ...fixture.extraConfig[name] });
        s.setTimesteps(n);
        assert.equal(s.timesteps.length, ref.timesteps.length, `${where}: timestep count`);
        s.timesteps.forEach((t, i) => assert.ok(Math.abs(t - ref.timesteps[i]!) <= 1e-6 * Math.max(1, t), `${where}: timestep ${i} is ${t}, reference ${ref.timesteps[i]}`));
        assert.ok(Math.abs(s.initNoiseSigma - ref.initNoiseSigma) <= 1e-9 * ref.initNoiseSigma, `${where}: initNoiseSigma ${s.initNoiseSigma}, reference ${ref.initNoiseSigma}`);
        const samples = f32(ref.samples);
        const noise = f32(ref.noise);
        const rng = replay(noise, fixture.dim);
        let x: Float32Array = xT.map((v) => v * s.initNoiseSigma);
        s.timesteps.forEach((t, k) => {
          x = s.step(model(s.scaleModelInput(x, t), t), t, x, rng).prevSample;
          const want = samples.subarray(k * fixture.dim, (k + 1) * fixture.dim);
          // Relative to the step's largest value: PNDM's and Euler's intermediate samples reach 1e4.
          const scale = Math.max(1, ...Array.from(want, Math.abs));
          const err = Math.max(...Array.from(want, (w, i) => Math.abs(x[i]! - w))) / scale;
          worst = Math.max(worst, err);
          assert.ok(err <= 2e-6, `${where}: step ${k} (t = ${t}) differs from the reference by ${err.toExponential(2)} (relative)\n ours ${Array.from(x).join(", ")}\n  ref ${Array.from(want).join(", ")}`);
        });
        assert.equal(rng.used(), noise.length, `${where}: the sampler drew less noise than the reference`);
      }
      assert.ok(worst <= 2e-6, `worst relative difference ${worst}`);
    });
  }
});
