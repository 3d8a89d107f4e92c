/**
 * Images for fixed seeds are byte-identical to the ones the code made before the single denoise driver
 * (test/fixtures/byte-identical.json, written from the untouched code): under every batching policy,
 * in-process and across the worker-process boundary, and under `none` also when every request arrives
 * at once (`none` admits one request at a time, so none shares a UNet call).
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { BATCHING_POLICIES } from "../../src/core/config.js";
import { DiffusionEngine } from "../../src/engine/engine.js";
import type { GeneratedImage } from "../../src/core/output.js";
import { CASES, FIXTURE, cpuFingerprint, imageHash, runCases, type Fixture } from "./byte-identical-cases.js";

const fixture = JSON.parse(readFileSync(FIXTURE, "utf8")) as Fixture;
/** Byte for byte on the CPU that wrote the fixture; elsewhere within this many levels per channel (see cpuFingerprint). */
const sameCpu = fixture.cpu === cpuFingerprint();
const OTHER_CPU_MAX_DIFF = 12;
const OTHER_CPU_MEAN_DIFF = 0.5;
if (!sameCpu) {
  console.log(`# byte-identical: fixture written on "${fixture.cpu}", this is "${cpuFingerprint()}": comparing within ±${OTHER_CPU_MAX_DIFF} per channel (mean ≤ ${OTHER_CPU_MEAN_DIFF}) instead of byte for byte`);
}

const assertSame = (got: GeneratedImage[][], label: string) => {
  assert.equal(got.length, CASES.length);
  got.forEach((imgs, i) => {
    const what = `${label}: request ${i} (${JSON.stringify(CASES[i])}) images changed`;
    if (sameCpu) return assert.deepEqual(imgs.map(imageHash), fixture.hashes[i], what);
    assert.equal(imgs.length, fixture.images[i]!.length, what);
    imgs.forEach((img, k) => {
      const want = Buffer.from(fixture.images[i]![k]!, "base64");
      assert.equal(img.data.length, want.length, `${what}: size`);
      let max = 0;
      let sum = 0;
      for (let j = 0; j < want.length; j++) {
        const d = Math.abs(img.data[j]! - want[j]!);
        max = Math.max(max, d);
        sum += d;
      }
      assert.ok(max <= OTHER_CPU_MAX_DIFF && sum / want.length <= OTHER_CPU_MEAN_DIFF, `${what}: max diff ${max}, mean ${(sum / want.length).toFixed(3)}`);
    });
  });
};

describe("images are byte-identical to the reference fixture", { timeout: 180_000 }, () => {
  for (const batching of BATCHING_POLICIES) {
    it(`${batching}, in-process (uniproc)`, async () => {
      assertSame(await runCases({ executorClass: "uniproc", batching }), batching);
    });
  }

  it("continuous across the worker-process boundary (multiproc)", async () => {
    assertSame(await runCases({ numGpus: 1, batching: "continuous" }), "multiproc continuous");
  });

  it("none, with every request submitted at once", async () => {
    const engine = await DiffusionEngine.create({ executorClass: "uniproc", batching: "none", intraOpNumThreads: 1, allowNonNativeSizes: true });
    try {
      const outs = await Promise.all(CASES.map((c) => engine.generate({ width: 32, height: 32, ...c })));
      assertSame(
        outs.map((o) => {
          if (o.error) throw o.error;
          return [...o.images];
        }),
        "none, concurrent",
      );
    } finally {
      await engine.close();
    }
  });
});
