/**
 * The layout fixtures under test/fixtures/models (written by training/fixtures/make_fixtures.py) and the
 * values its torch reference loop computed for them.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { OmniDiffusionRequestInit } from "../../src/core/request.js";
import type { RgbImage } from "../../src/utils/png.js";

export const FIXTURES_DIR = fileURLToPath(new URL("../fixtures/models/", import.meta.url));

export const LAYOUTS = ["sd15", "sd15-fp16", "sd15-fixed", "sd21", "sd-turbo", "lcm"] as const;
export type Layout = (typeof LAYOUTS)[number];

export interface ExpectedCase {
  name: string;
  request: OmniDiffusionRequestInit & { prompt: string; width: number; height: number; seed: number };
  latentShape: [number, number, number];
  /** Final latents of each image (float32, base64). */
  latents: string[];
  /** Decoded image of each image (RGB uint8, every `stride`-th pixel in both directions, base64). */
  image: { stride: number; pixels: string[] };
}

export interface Expected {
  rng: Record<string, number[]>;
  layouts: Record<Layout, { tokens: Record<string, number[]>; cases: ExpectedCase[] }>;
}

export const expected: Expected = JSON.parse(readFileSync(join(FIXTURES_DIR, "expected.json"), "utf8"));

export function fixtureDir(layout: Layout): string {
  return join(FIXTURES_DIR, layout);
}

export function float32FromBase64(b64: string): Float32Array {
  const buf = Buffer.from(b64, "base64");
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
}

/** Every `stride`-th pixel of an image in both directions (RGB). */
export function subsample(img: RgbImage, stride: number): Uint8Array {
  const out: number[] = [];
  for (let y = 0; y < img.height; y += stride) for (let x = 0; x < img.width; x += stride) for (let c = 0; c < 3; c++) out.push(img.data[(y * img.width + x) * 3 + c]!);
  return Uint8Array.from(out);
}

/** Final latents within `rel` of the reference (relative to the reference's largest magnitude). */
export function assertLatentsClose(actual: Float32Array, expectedB64: string, rel: number, msg: string): void {
  const exp = float32FromBase64(expectedB64);
  assert.equal(actual.length, exp.length, `${msg}: latent size`);
  let scale = 0;
  let worst = 0;
  for (let i = 0; i < exp.length; i++) {
    scale = Math.max(scale, Math.abs(exp[i]!));
    worst = Math.max(worst, Math.abs(actual[i]! - exp[i]!));
  }
  assert.ok(worst <= rel * scale, `${msg}: latents differ by ${worst} (reference max |x| ${scale}, tolerance ${rel * scale})`);
}

/** Image pixels within `levels` of the reference, on all but `outliers` of the values (rounding edges). */
export function assertPixelsClose(actual: Uint8Array, expectedB64: string, levels: number, msg: string, outliers = 0): void {
  const exp = Buffer.from(expectedB64, "base64");
  assert.equal(actual.length, exp.length, `${msg}: pixel count`);
  let off = 0;
  let worst = 0;
  for (let i = 0; i < exp.length; i++) {
    const d = Math.abs(actual[i]! - exp[i]!);
    worst = Math.max(worst, d);
    if (d > levels) off++;
  }
  assert.ok(off <= outliers, `${msg}: ${off} pixel values differ by more than ${levels} (worst ${worst})`);
}
