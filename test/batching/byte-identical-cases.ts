/**
 * The requests whose images test/fixtures/byte-identical.json pins (sha256 of each image's RGB bytes):
 * several samplers, guidance on and off, a negative prompt, two images per prompt, and two sizes.
 * `npx tsx test/batching/byte-identical-cases.ts --write` regenerates the fixture; do that only when a change
 * is MEANT to alter images, and say so in the commit.
 */
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import type { OmniDiffusionConfigInput } from "../../src/core/config.js";
import type { GeneratedImage } from "../../src/core/output.js";
import type { OmniDiffusionRequestInit } from "../../src/core/request.js";
import { DiffusionEngine } from "../../src/engine/engine.js";

export const FIXTURE = new URL("../fixtures/byte-identical.json", import.meta.url);

export const CASES: OmniDiffusionRequestInit[] = [
  { prompt: "a red circle on a blue background", seed: 101, numInferenceSteps: 4, guidanceScale: 4 },
  { prompt: "a yellow star on a black background", seed: 102, numInferenceSteps: 5, guidanceScale: 1 },
  { prompt: "a white cross on a green background", seed: 103, numInferenceSteps: 6, guidanceScale: 7.5, numOutputsPerPrompt: 2 },
  { prompt: "a blue square on a white background", seed: 104, numInferenceSteps: 3, width: 64, height: 64, guidanceScale: 3 },
  { prompt: "a green triangle on a red background", seed: 105, numInferenceSteps: 5, guidanceScale: 3, scheduler: "euler_a" },
  { prompt: "a black circle on a yellow background", seed: 106, numInferenceSteps: 4, guidanceScale: 1, scheduler: "dpmpp_2m" },
  { prompt: "a red star on a white background", seed: 107, numInferenceSteps: 3, negativePrompt: "a blue square", scheduler: "euler" },
  { prompt: "a green circle on a black background", seed: 108, numInferenceSteps: 6, guidanceScale: 5, scheduler: "dpmpp_2m_karras", width: 64, height: 64, numOutputsPerPrompt: 2 },
  // pndm is not offered for tiny-shapes (its scheduler_config.json says why); lcm re-noises between steps
  { prompt: "a white star on a blue background", seed: 109, numInferenceSteps: 5, guidanceScale: 1, scheduler: "lcm" },
  { prompt: "a yellow cross on a red background", seed: 110, numInferenceSteps: 4, guidanceScale: 2, scheduler: "euler_karras" },
];

/**
 * The machine a fixture was written on. onnxruntime picks its CPU kernels by instruction set, so another CPU
 * may round a last float bit differently: the images are compared byte for byte only on the CPU that wrote
 * them, and within a small pixel tolerance elsewhere (the test says so when it does).
 */
export function cpuFingerprint(): string {
  let flags = "";
  try {
    const line = /^flags\s*:(.*)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "";
    // The instruction sets onnxruntime's CPU kernels choose between.
    flags = line.split(/\s+/).filter((f) => /^(avx|avx2|fma|f16c|avx512\w*|amx\w*|avx_vnni)$/.test(f)).sort().join(" ");
  } catch {
    flags = "no /proc/cpuinfo";
  }
  return `${process.arch} ${cpus()[0]?.model ?? "unknown cpu"} [${flags}]`;
}

/** What the fixture holds: per case, each image's hash and raw RGB bytes (base64), and the CPU that made them. */
export interface Fixture {
  note: string;
  cpu: string;
  hashes: string[][];
  images: string[][];
}

/** Hex sha256 of an image's raw RGB bytes, with its size so a shape change reads as such. */
export function imageHash(img: GeneratedImage): string {
  return `${img.width}x${img.height}:${createHash("sha256").update(img.data).digest("hex")}`;
}

/**
 * Runs every case ONE AT A TIME (each request alone in its UNet calls, so the images do not depend on
 * who shared a call: onnxruntime's float sums may differ in the last bit between batch sizes) and
 * returns each request's image hashes.
 */
export async function runCases(config: OmniDiffusionConfigInput): Promise<GeneratedImage[][]> {
  const engine = await DiffusionEngine.create({ intraOpNumThreads: 1, allowNonNativeSizes: true, ...config });
  try {
    const images: GeneratedImage[][] = [];
    for (const c of CASES) {
      const out = await engine.generate({ width: 32, height: 32, ...c });
      if (out.error) throw out.error;
      images.push([...out.images]);
    }
    return images;
  } finally {
    await engine.close();
  }
}

if (process.argv.includes("--write")) {
  const images = await runCases({ executorClass: "uniproc", batching: "none" });
  const fixture: Fixture = {
    note: "per image of CASES (test/batching/byte-identical-cases.ts), intraOpNumThreads 1: sha256 of the RGB bytes, and the bytes (base64)",
    cpu: cpuFingerprint(),
    hashes: images.map((imgs) => imgs.map(imageHash)),
    images: images.map((imgs) => imgs.map((i) => Buffer.from(i.data).toString("base64"))),
  };
  writeFileSync(FIXTURE, JSON.stringify(fixture, null, 2) + "\n");
  console.log(`wrote ${FIXTURE.pathname}`);
}
