import { randomInt } from "node:crypto";
import type { NoiseSource } from "../schedulers/types.js";

/** Largest seed we hand out (fits in a uint32, readable by every peer). */
export const MAX_SEED = 0xffffffff;

/** A fresh random seed, for requests that did not set one (reported back in the output). */
export function randomSeed(): number {
  return randomInt(0, MAX_SEED);
}

/**
 * Seeded standard-normal source: xoshiro128** for uniform bits (seeded through splitmix32 so nearby seeds
 * give unrelated streams) and the Box–Muller transform. Same seed → same numbers on every machine, since
 * only integer ops and IEEE double math are involved.
 */
export class SeededNormal implements NoiseSource {
  #s = new Uint32Array(4);
  #spare: number | null = null;

  constructor(seed: number) {
    let x = (seed >>> 0) ^ Math.floor(seed / 0x1_0000_0000);
    for (let i = 0; i < 4; i++) {
      // splitmix32
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      this.#s[i] = (z ^ (z >>> 16)) >>> 0;
    }
  }

  #nextU32(): number {
    const s = this.#s;
    const result = Math.imul(rotl(Math.imul(s[1]!, 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1]! << 9) >>> 0;
    s[2] = (s[2]! ^ s[0]!) >>> 0;
    s[3] = (s[3]! ^ s[1]!) >>> 0;
    s[1] = (s[1]! ^ s[2]!) >>> 0;
    s[0] = (s[0]! ^ s[3]!) >>> 0;
    s[2] = (s[2]! ^ t) >>> 0;
    s[3] = rotl(s[3]!, 11);
    return result;
  }

  /** Uniform in (0, 1), never exactly 0 (log-safe). */
  uniform(): number {
    return (this.#nextU32() + 0.5) / 0x1_0000_0000;
  }

  normal(): number {
    if (this.#spare !== null) {
      const v = this.#spare;
      this.#spare = null;
      return v;
    }
    const r = Math.sqrt(-2 * Math.log(this.uniform()));
    const th = 2 * Math.PI * this.uniform();
    this.#spare = r * Math.sin(th);
    return r * Math.cos(th);
  }

  randn(out: Float32Array): Float32Array {
    for (let i = 0; i < out.length; i++) out[i] = this.normal();
    return out;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
